export { createLogger, type Logger, type LoggerOptions } from './logger.js';
export { RequestStats, DURATION_BUCKETS, FINE_BUCKETS, fineQuantile, type StatsSnapshot } from './request-stats.js';
export { mergeRefusals, mergeStats, renderDependencyBreakers, renderLogCounts, renderStats, renderTraceSpans, sumSpans, type SpanCounts } from './exposition.js';
export { LineWriter, type LineWriterOptions } from './line-writer.js';
export { RetiredSeries } from './retired-series.js';
