// Types of the Prometheus text-format parser the tests use (it ships none).
declare module 'parse-prometheus-text-format' {
  export interface MetricFamily {
    name: string;
    help: string;
    type: 'COUNTER' | 'GAUGE' | 'HISTOGRAM' | 'SUMMARY' | 'UNTYPED';
    metrics: Record<string, unknown>[];
  }
  export default function parsePrometheusTextFormat(text: string): MetricFamily[];
}
