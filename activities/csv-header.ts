import fs from 'node:fs';

/** Bytes read to find the header row; a longer header line is rejected. */
const HEADER_PROBE_BYTES = 64 * 1024;
const DELIMITERS = [',', ';', '\t', '|'];

export interface CsvHeader {
  columns: string[];
  delimiter: string;
}

/** Splits one CSV line on `delimiter`, honouring double quotes ("" is an escaped quote). */
export function splitCsvLine(line: string, delimiter: string): string[] {
  const fields: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const char = line[i];
    if (quoted) {
      if (char === '"' && line[i + 1] === '"') {
        field += '"';
        i++;
      } else if (char === '"') {
        quoted = false;
      } else {
        field += char;
      }
    } else if (char === '"') {
      quoted = true;
    } else if (char === delimiter) {
      fields.push(field);
      field = '';
    } else {
      field += char;
    }
  }
  fields.push(field);
  return fields;
}

/**
 * Reads the header row of a delimited text file: strips a UTF-8 byte-order mark and a CR, picks the
 * delimiter that the header uses (comma, semicolon, tab or pipe), and returns the column names.
 * Throws an Error with a plain explanation when the file is not a delimited text file.
 */
export function readCsvHeader(file: string): CsvHeader {
  const handle = fs.openSync(file, 'r');
  const buffer = Buffer.alloc(HEADER_PROBE_BYTES);
  let length: number;
  try {
    length = fs.readSync(handle, buffer, 0, HEADER_PROBE_BYTES, 0);
  } finally {
    fs.closeSync(handle);
  }

  const probe = buffer.subarray(0, length);
  if (probe.includes(0)) throw new Error('it contains NUL bytes, so it is not a text file');
  const text = probe.toString('utf8').replace(/^\uFEFF/, '');
  const newline = text.indexOf('\n');
  if (newline < 0 && length === HEADER_PROBE_BYTES) {
    throw new Error(`its first line is longer than ${HEADER_PROBE_BYTES} bytes`);
  }
  const line = (newline < 0 ? text : text.slice(0, newline)).replace(/\r$/, '');

  const counts = DELIMITERS.map((d) => splitCsvLine(line, d).length - 1);
  const best = counts.indexOf(Math.max(...counts));
  if (counts[best] === 0) {
    throw new Error('its first line has no comma, semicolon, tab or pipe, so it has no delimited header row');
  }
  const delimiter = DELIMITERS[best];
  const columns = splitCsvLine(line, delimiter).map((name) => name.trim());

  const seen = new Set<string>();
  for (const name of columns) {
    if (name === '') throw new Error('its header row has an empty column name');
    if (seen.has(name)) throw new Error(`its header row names column ${name} twice`);
    seen.add(name);
  }
  return { columns, delimiter };
}
