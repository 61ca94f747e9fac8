/**
 * Shared helpers for the real-KVM backend tests: open the backend once per test file (skipping
 * every test with the reason when /dev/kvm is unavailable) and run traces written as JSON lines,
 * returning the result lines as plain JSON objects (bigints converted as the contract writes
 * them), so they can be compared with `deepEqual` against expected lines.
 */
import { after, type TestContext } from 'node:test';
import { openKvmBackend, type KvmBackend } from '../../src/backends/kvm/index.js';
import { parseTrace } from '../../src/trace/parse.js';
import { runTrace } from '../../src/trace/runner.js';
import { resultToJson } from '../../src/trace/format.js';
import { describeKernel, type LiveKernel } from '../../src/cli/backends.js';
import { factValue, NEEDABLE_FACTS, type NeedableFact } from '../../src/core/profiles/facts.js';

export type Json = Record<string, unknown>;

let opened: KvmBackend | { unavailable: string } | undefined;

// Registered at import time (top level), so it runs after all tests of the file.
after(() => {
  if (opened !== undefined && !('unavailable' in opened)) opened.dispose();
});

/** The file's backend (opened on first use, disposed after all tests), or the skip reason. */
export function kvm(): KvmBackend | { unavailable: string } {
  opened ??= openKvmBackend();
  return opened;
}

const printed = new Set<string>();

/**
 * Mark a test skipped for a root cause: the full reason is printed once per cause (per test
 * process), each test then names the cause only.
 */
export function skipFor(t: TestContext, cause: string, reason: string): void {
  if (!printed.has(cause)) {
    printed.add(cause);
    console.log(`# skipping tests that need ${cause}: ${reason}`);
  }
  t.skip(`needs ${cause} (reason printed once above)`);
}

/** The backend, or undefined after marking the test skipped with the reason. */
export function backendOrSkip(t: TestContext): KvmBackend | undefined {
  const b = kvm();
  if ('unavailable' in b) {
    skipFor(t, 'a usable /dev/kvm', b.unavailable);
    return undefined;
  }
  return b;
}

let described: LiveKernel | undefined;

/** The live kernel's facts and matching profile (probed once per test file). */
export function liveKernelOf(b: KvmBackend): LiveKernel {
  described ??= describeKernel(b);
  return described;
}

/**
 * The backend, or undefined after marking the test skipped: when /dev/kvm is unusable, or when
 * the live kernel lacks a fact the test needs (the reason names the fact).
 */
export function backendWith(t: TestContext, ...needs: NeedableFact[]): KvmBackend | undefined {
  const b = backendOrSkip(t);
  if (b === undefined) return undefined;
  const facts = liveKernelOf(b).facts;
  const missing = needs.find((f) => !factValue(facts, f));
  if (missing !== undefined) {
    skipFor(t, missing, `${NEEDABLE_FACTS[missing]}: this kernel lacks it`);
    return undefined;
  }
  return b;
}

/** Parse and run a trace; returns one JSON object per op. Throws on trace syntax errors. */
export function runLines(b: KvmBackend, lines: readonly string[]): Json[] {
  const { ops, errors } = parseTrace(lines.join('\n'), '<test>');
  if (errors.length > 0) throw new Error(errors.map((e) => e.message).join('\n'));
  return runTrace(ops, b).map((r) => JSON.parse(JSON.stringify(resultToJson(r))) as Json);
}

/** A KVM_SET_USER_MEMORY_REGION op on VM "vm" at GPA 0 (sizes and addresses as trace values). */
export function memslotOp(userspaceAddr: string, size: string, slot = 0): Json {
  return {
    op: 'KVM_SET_USER_MEMORY_REGION',
    vm: 'vm',
    slot,
    flags: 0,
    guest_phys_addr: 0,
    memory_size: size,
    userspace_addr: userspaceAddr,
  };
}

/** Build a trace line from an object (numbers above 2^53 must already be "0x..." strings). */
export const L = (o: Json): string => JSON.stringify(o);
