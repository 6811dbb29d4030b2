// The shape every benchmark reports: a figure, the baseline measured beside it in the same run, and the
// target it is held to. Security: none — benchmarks run on scratch data in temporary directories.

export interface BenchFigure {
  readonly name: string;
  readonly value: number;
  readonly unit: string;
}

export interface BenchResult {
  name: string;
  value: number;
  unit: string;
  /** the same operation done the plain way (e.g. raw lmdb) in the same run, so machines compare fairly */
  baseline?: BenchFigure;
  /** value / baseline.value (for rates) */
  ratio?: number;
  /** human-readable target, e.g. ">= 50% of raw" or "<= 50 ms" */
  target?: string;
  pass?: boolean;
  notes?: string;
}
