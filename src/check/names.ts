/**
 * The trace file's own names for model objects. Explanations speak of the model's objects
 * (`vm0`, `guest_memfd #105`); a reader knows them by the handles the file gave them (`vm`,
 * `gmem`). While a trace runs, every successful creating op records which object its `as` name
 * now stands for; `rename` then rewrites a model description with those names, keeping the model
 * id in parentheses (`gmem (guest_memfd #105)`). An object keeps the last name bound to it, also
 * after a close (the name is how the reader knows it). Pure.
 */
import type { Host } from '../core/host.js';
import { GmemFile, VmFile } from '../core/kvm/objects.js';
import { bindsKind } from '../trace/fields.js';
import type { HandleTable } from '../trace/runner.js';
import type { TraceOp } from '../trace/types.js';

export class ObjectNames {
  private readonly vms = new Map<number, string>();
  private readonly files = new Map<number, string>();

  /** After `op` ran: record the object its `as` name is now bound to (if it created one). */
  note(op: TraceOp, table: HandleTable, host: Host): void {
    if (op.as === undefined || bindsKind(op.op) !== 'fd') return;
    const r = table.fd({ kind: 'handle', name: op.as });
    if (r.kind !== 'obj' || r.fd < 0) return;
    const f = host.file(r.fd);
    if (f instanceof VmFile) this.vms.set(f.vm.index, op.as);
    else if (f instanceof GmemFile) this.files.set(f.ino, op.as);
  }

  /** The handle name of VM `index`, if the file named it. */
  vmName(index: number): string | undefined {
    return this.vms.get(index);
  }

  /** The handle name of the guest_memfd with inode `ino`, if the file named it. */
  gmemName(ino: number): string | undefined {
    return this.files.get(ino);
  }

  /** `vm0` → `vm (vm0)`, `guest_memfd #105` → `gmem (guest_memfd #105)` where a handle names it. */
  rename(text: string): string {
    return text.replace(
      /guest_memfd #(\d+)|\bvm(\d+)\b/g,
      (m: string, ino?: string, vm?: string) => {
        const name = ino !== undefined ? this.files.get(Number(ino)) : this.vms.get(Number(vm));
        return name === undefined || name === m ? m : `${name} (${m})`;
      },
    );
  }
}
