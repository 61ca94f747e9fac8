/**
 * Named injected bugs for the seeded-bug benchmark. The faithful model runs with an empty set;
 * every check of a mutant in the model is a single `has()` on this set, placed where the real
 * kernel bug (or plausible slip) would be.
 */

export const MUTANT_NAMES = [] as const;

export type MutantName = string;

export class MutantSet {
  private readonly set: ReadonlySet<string>;
  constructor(names: Iterable<string> = []) {
    this.set = new Set(names);
  }
  has(name: string): boolean {
    return this.set.size !== 0 && this.set.has(name);
  }
  get names(): string[] {
    return [...this.set];
  }
}

export const NO_MUTANTS = new MutantSet();
