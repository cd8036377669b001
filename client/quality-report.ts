import type { QualityReport } from '../workflows/types';

const count = (value: number): string => value.toLocaleString('en-US');

/** Formats a data-quality report as indented lines of label and value, for the CLI and the demo. */
export function formatQualityReport(report: QualityReport, indent = '  '): string {
  const lines: [string, string][] = [
    ['source file', `${report.sourceFile} (sha256 ${report.sourceSha256.slice(0, 12)})`],
    ['checks', report.checks === 'one-pass' ? 'one pass, typed read' : 'careful, rule by rule'],
    ['rows in', count(report.rowsIn)],
    ['rows quarantined', count(report.rowsQuarantined)],
    ['rows to train / test / extra', [report.rowsTrain, report.rowsTest, report.rowsExtra].map(count).join(' / ')],
    ['arrival dates rolled forward', count(report.arrivalDatesNormalised)],
    ['values trimmed', count(report.valuesTrimmed)],
    ['rows duplicated apart from the id', count(report.duplicateRowsIgnoringId)],
    ['canceled share in train', `${(report.canceledShareTrain * 100).toFixed(1)} %`],
  ];
  const width = Math.max(...lines.map(([label]) => label.length));
  return lines.map(([label, value]) => `${indent}${label.padEnd(width)}  ${value}`).join('\n');
}
