/**
 * Error types shared across probsem. Every error the library throws on purpose
 * is a ProbsemError, so callers (and the CLI) can tell expected failures such as
 * bad input files apart from bugs; `code` gives a stable machine-readable tag.
 */
export class ProbsemError extends Error {
  constructor(message: string, readonly code: string = 'PROBSEM') {
    super(message);
    this.name = 'ProbsemError';
  }
}

/** Input data (a file or buffer) is malformed or not in a supported format. */
export class DataFormatError extends ProbsemError {
  constructor(message: string) {
    super(message, 'DATA_FORMAT');
    this.name = 'DataFormatError';
  }
}
