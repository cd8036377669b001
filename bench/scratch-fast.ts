import { DuckDBInstance } from '@duckdb/node-api';
const file = process.argv[2];
const out = process.argv[3];
const mem = process.argv[4];
const num = ['no_of_adults','no_of_children','no_of_weekend_nights','no_of_week_nights','required_car_parking_space','lead_time','arrival_year','arrival_month','arrival_date','repeated_guest','no_of_previous_cancellations','no_of_previous_bookings_not_canceled','avg_price_per_room','no_of_special_requests'];
const header = 'Booking_ID,no_of_adults,no_of_children,no_of_weekend_nights,no_of_week_nights,type_of_meal_plan,required_car_parking_space,room_type_reserved,lead_time,arrival_year,arrival_month,arrival_date,market_segment_type,repeated_guest,no_of_previous_cancellations,no_of_previous_bookings_not_canceled,avg_price_per_room,no_of_special_requests,booking_status'.split(',');
async function main() {
  const t0 = Date.now();
  const opts: Record<string,string> = { autoinstall_known_extensions: 'false', autoload_known_extensions: 'false' };
  if (mem) { opts.memory_limit = mem; opts.temp_directory = '/tmp/proto/spill'; }
  const inst = await DuckDBInstance.create(':memory:', opts);
  const c = await inst.connect();
  const lap = (l: string) => console.log(l, (Date.now()-t0)/1000, Math.round(process.memoryUsage().rss/1048576));
  const types = header.map(h => `'${h}': '${num.includes(h) ? (h==='avg_price_per_room'?'DOUBLE':'SMALLINT') : 'VARCHAR'}'`).join(', ');
  const mode = process.env.MODE ?? 'table';
  const src = `read_csv('${file}', auto_detect=false, header=true, delim=',', quote='"', escape='"', columns={${types}}, store_rejects=true)`;
  const sel = `SELECT trim(Booking_ID) AS booking_id, ${num.join(', ')}, trim(type_of_meal_plan) AS type_of_meal_plan, trim(room_type_reserved) AS room_type_reserved, trim(market_segment_type) AS market_segment_type,
     CASE trim(booking_status) WHEN 'Canceled' THEN 1 WHEN 'Not_Canceled' THEN 0 END::INTEGER AS booking_status,
     make_date(arrival_year, arrival_month, 1) AS date_of_arrival,
     (('0x' || substr(md5(trim(Booking_ID)), 1, 8))::UBIGINT % 1000000) < 200000 AS _is_test,
     (Booking_ID <> trim(Booking_ID))::INTEGER + (type_of_meal_plan <> trim(type_of_meal_plan))::INTEGER + (room_type_reserved <> trim(room_type_reserved))::INTEGER + (market_segment_type <> trim(market_segment_type))::INTEGER + (booking_status<>trim(booking_status))::INTEGER AS _trimmed,
     hash(${num.join(', ')}, type_of_meal_plan, room_type_reserved, market_segment_type, booking_status) AS _row_hash
    FROM ${src}`;
  if (mode === 'table') {
    await c.run(`CREATE TEMP TABLE clean AS ${sel}`); lap('ctas');
    const r = await c.runAndReadAll(`SELECT count(*), count(DISTINCT booking_id), count(DISTINCT _row_hash), sum(_trimmed), count(*) FILTER (WHERE booking_status IS NULL OR lead_time < 0 OR no_of_adults < 0 OR avg_price_per_room < 0 OR booking_id = '' OR type_of_meal_plan IS NULL), count(*) FILTER (WHERE _is_test) FROM clean`); lap('agg'); console.log(r.getRows());
    const rej = await c.runAndReadAll('SELECT count(*) FROM reject_errors'); console.log(rej.getRows());
    for (const [k, w] of [['train', "market_segment_type='Online' AND NOT _is_test"], ['test', "market_segment_type='Online' AND _is_test"], ['extra', "market_segment_type<>'Online'"]]) {
      await c.run(`COPY (SELECT * EXCLUDE (_is_test, _trimmed, _row_hash) FROM clean WHERE ${w}) TO '${out}/${k}.parquet' (FORMAT parquet)`); lap('copy ' + k);
    }
  } else {
    await c.run(`COPY (SELECT *, CASE WHEN market_segment_type <> 'Online' THEN 'extra' WHEN _is_test THEN 'test' ELSE 'train' END AS _t FROM (${sel})) TO '${out}/part' (FORMAT parquet, PARTITION_BY (_t), OVERWRITE_OR_IGNORE)`); lap('copy');
    const r = await c.runAndReadAll(`SELECT count(*), count(DISTINCT booking_id), count(DISTINCT _row_hash), sum(_trimmed) FROM read_parquet('${out}/part/*/*.parquet')`); lap('agg'); console.log(r.getRows());
  }
  console.log('maxrss', Math.round(process.resourceUsage().maxRSS/1024));
}
main();
