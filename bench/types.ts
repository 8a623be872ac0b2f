// The shape every benchmark suite returns; bench/index.ts prints it (and, with --json, as one JSON line).
export interface Metric {
  value: number;
  unit: string;
  /** The number we compare against (local disk, libfuse passthrough, the paper). */
  baseline?: number;
  /** value / baseline (or baseline / value for "lower is better"; the suite says which in `note`). */
  ratio?: number;
  note?: string;
}

export interface BenchOptions {
  json: boolean;
  /** Extra arguments after the suite name, for suite-specific knobs. */
  args: string[];
  /** Progress and human-readable output; goes to stderr when --json so stdout's last line is the JSON. */
  log: (line: string) => void;
}

export interface BenchSuite {
  run(opts: BenchOptions): Promise<Record<string, Metric>>;
}
