/**
 * Small drivers for CPU profiling the hot paths (not a benchmark: no figures). Run through
 * `npm run bench -- --profile NAME` (run.ts runs this file and prints the top self-time functions
 * mapped to src/ lines), or directly:
 *   node dist/bench/profile.js NAME OUT.cpuprofile
 * The V8 sampling profiler (the one behind `node --cpu-prof`, 1 ms default interval... here
 * 100 µs) is started through node:inspector only after the untimed setup (trace generation,
 * guest programs), so the profile holds the measured work alone.
 *
 * NAME:
 *   fault-run      KVM_RUN stores, gmem-only slot, sequential, events off
 *   fault-run-random  KVM_RUN stores, gmem-only slot of private memory, random order, events off
 *   fault-events   fault path alone, gmem-only slot, sequential, events on
 *   fault-random   fault path alone, gmem-only slot, random order, events off
 *   fault-private  fault path alone, private slot, sequential, events off
 *   replay         parse + replay of the generated traces without KVM_RUN
 *   replay-run     parse + replay of the generated traces including KVM_RUN
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { fileURLToPath } from 'node:url';
import { resolve } from 'node:path';
import { ModelBackend } from '../src/backends/model.js';
import { getProfile } from '../src/core/profiles/index.js';
import { parseTrace } from '../src/trace/parse.js';
import { runTrace } from '../src/trace/runner.js';
import {
  gfnOrder,
  setupFaultVm,
  storePrograms,
  touchViaFaultPath,
  touchViaKvmRun,
} from './faults.bench.js';
import { makeCorpus } from './replay.bench.js';

export const PROFILE_TARGETS = [
  'fault-run',
  'fault-run-random',
  'fault-events',
  'fault-random',
  'fault-private',
  'replay',
  'replay-run',
] as const;

const PAGES = 1 << 19;

/** A started V8 CPU profiler; `stop()` returns the profile (JSON text). */
type Profiler = { stop(): Promise<string> };

function post(s: Session, method: string, params?: object): Promise<unknown> {
  return new Promise((res, rej) =>
    s.post(method, params ?? {}, (e, r) => (e === null ? res(r) : rej(e))),
  );
}

async function startProfiler(): Promise<Profiler> {
  const s = new Session();
  s.connect();
  await post(s, 'Profiler.enable');
  await post(s, 'Profiler.setSamplingInterval', { interval: 100 });
  await post(s, 'Profiler.start');
  return {
    stop: async () => {
      const r = (await post(s, 'Profiler.stop')) as { profile: unknown };
      s.disconnect();
      return JSON.stringify(r.profile);
    },
  };
}

/**
 * Run the workload `name`; `start` is called after the untimed setup and before the work, and
 * `stop` afterwards.
 */
export async function profileDriver(
  name: string,
  start: () => Promise<void> = async () => {},
): Promise<void> {
  switch (name) {
    case 'fault-run': {
      const programs = storePrograms(gfnOrder(PAGES, 'seq'));
      await start();
      for (let i = 0; i < 6; i++) touchViaKvmRun(setupFaultVm(PAGES, 'gmem-only', false), programs);
      return;
    }
    case 'fault-run-random': {
      const programs = storePrograms(gfnOrder(PAGES, 'random'));
      await start();
      for (let i = 0; i < 2; i++)
        touchViaKvmRun(setupFaultVm(PAGES, 'gmem-private', false), programs);
      return;
    }
    case 'fault-events':
    case 'fault-random':
    case 'fault-private': {
      const order = gfnOrder(PAGES, name === 'fault-random' ? 'random' : 'seq');
      const reps = name === 'fault-random' ? 2 : 8;
      await start();
      for (let i = 0; i < reps; i++)
        touchViaFaultPath(
          setupFaultVm(
            PAGES,
            name === 'fault-private' ? 'private' : 'gmem-only',
            name === 'fault-events',
          ),
          order,
        );
      return;
    }
    case 'replay':
    case 'replay-run': {
      const c = makeCorpus();
      const texts = name === 'replay' ? c.noRun : c.all;
      const profile = getProfile('linux-6.18')!;
      await start();
      for (let r = 0; r < 6; r++)
        for (const t of texts) runTrace(parseTrace(t).ops, new ModelBackend(profile));
      return;
    }
    default:
      throw new Error(`unknown profile target ${name} (${PROFILE_TARGETS.join(', ')})`);
  }
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === resolve(process.argv[1])) {
  const name = process.argv[2] ?? 'fault-run';
  const out = process.argv[3] ?? `${name}.cpuprofile`;
  let prof: Profiler | undefined;
  profileDriver(name, async () => {
    prof = await startProfiler();
  })
    .then(async () => {
      if (prof === undefined) throw new Error('profiler never started');
      writeFileSync(out, await prof.stop());
    })
    .catch((e: unknown) => {
      console.error(e instanceof Error ? e.message : e);
      process.exitCode = 2;
    });
}
