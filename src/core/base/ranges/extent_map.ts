/**
 * ExtentMap: a {@link RangeMap} of extent values (`{ base, ...rest }`, see `extentOps`) that
 * stores fragmented regions in directly indexed chunks instead of one B+tree entry (and one value
 * object) per key.
 *
 * Callers see exactly what a RangeMap with the same ops shows: the same maximal coalesced entries,
 * in the same order, through the same methods (it is a subclass, so it can stand wherever a
 * RangeMap is expected). Only value identity differs: values may be fresh objects, equal field by
 * field (and in the same key order) to what the RangeMap would return. Callers must not compare
 * values by identity or mutate them (RangeMap values are immutable anyway).
 *
 * ## Structure
 *
 * Keys are grouped in chunks of CHUNK (512) keys: chunk c holds keys [512c, 512c + 512), one
 * 2 MiB frame of pages. Each chunk is either
 * - in tree mode (the default): its keys live in `tree`, an ordinary RangeMap with the same ops,
 *   where long runs stay single entries (a sequentially filled 2^19-page slot is one entry); or
 * - dense: a {@link Chunk} holds per key one int32, `base * 2^5 + sid` (0 = absent), where sid
 *   (1 <= sid <= SID_MAX = 31) names the value's shape in an interned table (every field but
 *   `base`; `ExtentShape.key`). Key k+1 continues key k's run iff its int32 is k's plus 2^5 (same
 *   shape, base + 1) and k's base joins. Only bases in [0, 2^26) with a shape id up to 31 pack
 *   (2^26 * 2^5 = 2^31, so a packed value is a non-negative int32): a chunk never holds another
 *   value (a write of one moves the chunk back to the tree first, and a chunk holding one never
 *   becomes dense).
 * `tree` never holds a key of a dense chunk. A tree-mode chunk becomes dense when a single-key
 * `set` that starts a new tree entry leaves DENSIFY tree entries in the chunk (random-order
 * faults); a dense chunk is freed when it empties, when a range write covers it whole, and goes
 * back to the tree when a range operation leaves at most SPARSE runs in it. Memory therefore
 * stays proportional to the entries: a dense chunk (~2 KiB) exists only while it holds keys, and
 * only after DENSIFY separate entries were stored in it.
 *
 * Entries reported to callers are the maximal runs over both stores: a run may continue from a
 * tree entry into a dense chunk and on. Key k+1 continues the run of key k iff
 * `ops.canMerge(value(k), 1, value(k+1))`, which for extent ops is: same shape, base + 1, and
 * `shape.joinsFrom(base of k)` (Spte: a zero-page mapping never continues). RangeMap's maximal
 * coalescing makes its entries exactly these runs, provided a value whose base does not join
 * (`joinsFrom` false) is only ever set one key at a time (`set` throws otherwise).
 *
 * `count` (the number of maximal entries) is kept up to date by recounting run starts in the
 * window an operation can affect ([start, end] of the written range).
 *
 * This module is pure (no Node APIs, clocks, or randomness).
 */
import { MAX_KEY, RangeMap, type RangeEntry, type RangeValueOps } from './range_map.js';

/** How an extent value splits into its base and its shape (every other field). */
export interface ExtentShape<V extends { readonly base: number }> {
  /**
   * A small integer (0 <= key < 65535) naming every field of `v` but `base`: two values have
   * the same key iff they are equal in every field but `base` (and list their fields in the same
   * order).
   */
  key(v: V): number;
  /**
   * May a run continue past a key whose base is `base` (given the next key has the same shape and
   * base + 1)? Default: always. Must match the ops' canMerge.
   */
  joinsFrom?(base: number): boolean;
  /**
   * The value of `t`'s shape with base `base`: must equal `ops.shift(t, base - t.base)` field by
   * field and in field order (default: that call). A literal is faster than the spread.
   */
  make?(t: V, base: number): V;
}

/** Keys per chunk (a 2 MiB frame of 4 KiB pages). */
const CHUNK = 512;
/** A chunk becomes dense when a non-merging single-key set leaves this many tree entries in it. */
const DENSIFY = 8;
/** A dense chunk with at most this many runs after a range operation goes back to the tree. */
const SPARSE = 4;

/**
 * One dense chunk. Its keys live in the map's slab at [off, off + CHUNK): key i's packed value
 * (see pack()) at off + i, so a lookup reads one int32 and no per-chunk array object. The number
 * of keys with a value is cn[off / SLOT].
 */
class Chunk {
  constructor(
    readonly index: number,
    readonly off: number,
  ) {}
}

const EMPTY_I32 = new Int32Array(0);
/** Slab slots per chunk. */
const SLOT = CHUNK;
/** Bits of a packed value that hold the shape id: packed values are base * SID_SPAN + sid. */
const SID_BITS = 5;
const SID_SPAN = 1 << SID_BITS;
/** The largest shape id that packs (a map with more shapes keeps the others in the tree). */
export const SID_MAX = SID_SPAN - 1;
/**
 * Bases below this pack into a non-negative int32 (PACK_LIMIT * SID_SPAN = 2^31): the slab is an
 * Int32Array, half the memory (and the cache and TLB footprint) of doubles. Frame numbers and
 * file offsets stay far below it in practice (2^26 pages: 256 GiB); a value beyond it keeps its
 * chunk in the tree.
 */
export const PACK_LIMIT = 2 ** (31 - SID_BITS);

/** The slab's int32 for a value of shape `sid` (1 <= sid <= SID_MAX) with base `base` (packable). */
function pack(base: number, sid: number): number {
  return base * SID_SPAN + sid;
}
/** The base of a packed value. */
function baseOf(x: number): number {
  return x >> SID_BITS;
}
/** The shape id of a packed value (0 for 0: absent). */
function sidOfPacked(x: number): number {
  return x & SID_MAX;
}
/** Can bases base .. base + n - 1 be packed? */
function packable(base: number, n: number): boolean {
  return base >= 0 && base + n <= PACK_LIMIT && Math.floor(base) === base;
}
const alwaysJoins = (): boolean => true;

function checkRange(start: number, end: number): void {
  if (!(Number.isInteger(start) && Number.isInteger(end) && start >= 0 && end <= MAX_KEY)) {
    throw new RangeError(`RangeMap: invalid key range [${start}, ${end})`);
  }
}

/**
 * Slab offsets of the dense chunks by chunk index: an open-addressing hash table (linear probing,
 * backward-shift deletion), sized to the number of dense chunks. A lookup is a multiply and
 * usually one probe of two typed arrays, where a Map costs a hash-table walk. Exported for tests.
 */
export class ChunkOffsets {
  /** Chunk index per slot, -1 = empty. */
  private keys = new Float64Array(8).fill(-1);
  private vals = new Int32Array(8);
  private bits = 3;
  private n = 0;

  /** The home slot of chunk index c (a non-negative integer below 2^53 / CHUNK). */
  private home(c: number): number {
    return Math.imul((c | 0) ^ ((c / 4294967296) | 0), 0x9e3779b1) >>> (32 - this.bits);
  }

  /** The slab offset of chunk c, or -1. */
  get(c: number): number {
    const keys = this.keys;
    const mask = keys.length - 1;
    for (let i = this.home(c); ; i = (i + 1) & mask) {
      const k = keys[i]!;
      if (k === c) return this.vals[i]!;
      if (k === -1) return -1;
    }
  }

  set(c: number, off: number): void {
    if (2 * (this.n + 1) > this.keys.length) this.grow();
    const keys = this.keys;
    const mask = keys.length - 1;
    let i = this.home(c);
    while (keys[i] !== -1 && keys[i] !== c) i = (i + 1) & mask;
    if (keys[i] === -1) this.n++;
    keys[i] = c;
    this.vals[i] = off;
  }

  delete(c: number): void {
    const keys = this.keys;
    const vals = this.vals;
    const mask = keys.length - 1;
    let i = this.home(c);
    while (keys[i] !== c) {
      if (keys[i] === -1) return;
      i = (i + 1) & mask;
    }
    this.n--;
    // Backward shift: move up every later entry of the probe run whose home is not in (i, j].
    for (let j = (i + 1) & mask; keys[j] !== -1; j = (j + 1) & mask) {
      const h = this.home(keys[j]!);
      const stays = i < j ? h > i && h <= j : h > i || h <= j;
      if (!stays) {
        keys[i] = keys[j]!;
        vals[i] = vals[j]!;
        i = j;
      }
    }
    keys[i] = -1;
  }

  private grow(): void {
    const oldK = this.keys;
    const oldV = this.vals;
    this.bits++;
    this.keys = new Float64Array(1 << this.bits).fill(-1);
    this.vals = new Int32Array(1 << this.bits);
    this.n = 0;
    for (let i = 0; i < oldK.length; i++) if (oldK[i] !== -1) this.set(oldK[i]!, oldV[i]!);
  }
}

/** Raw pieces of both stores over a key range, in key order (see ExtentMap.raw). */
interface Raw<V> {
  s: number[];
  e: number[];
  base: number[];
  sid: number[];
  /** The tree's value at s (tree pieces) or undefined (dense runs). */
  v: Array<V | undefined>;
}

/**
 * A RangeMap of extent values with dense chunks for fragmented regions. See the module comment.
 */
export class ExtentMap<V extends { readonly base: number }> extends RangeMap<V> {
  private tree: RangeMap<V>;
  /** Storage of the dense chunks (see Chunk); slots are reused, grown by doubling. */
  private slab = EMPTY_I32;
  private slabFree: number[] = [];
  private slabUsed = 0;
  /** Keys with a value, per slab slot (chunk off / SLOT). */
  private cn = EMPTY_I32;
  /** Slab offsets of the dense chunks by chunk index (the hot paths' lookup). */
  private offs = new ChunkOffsets();
  /** One-entry cache of offs (chunk index -> offset or -1). */
  private lastOc = -1;
  private lastOff = -1;
  /** Dense chunks by chunk index. */
  private chunks = new Map<number, Chunk>();
  /** The same chunks in key order (keyed by chunk index; distinct objects never coalesce). */
  private order = new RangeMap<Chunk>();
  /** Number of maximal entries over both stores. */
  private cnt = 0;
  /** Keys held by dense chunks. */
  private denseCovered = 0;
  /** Interned shapes: sid (>= 1) by shape key, and one value of each shape (its template). */
  private sidByKey: number[] = [];
  private tmpl: V[] = [];
  private readonly joinsFrom: (base: number) => boolean;
  /** Bumped by every mutation; iteration uses it to detect forbidden mutation. */
  private ver = 0;
  /** One-entry chunk lookup cache (chunk index -> dense chunk or undefined). */
  private lastC = -1;
  private lastCh: Chunk | undefined = undefined;
  /** Base found by the last probe(). */
  private pBase = 0;
  /**
   * The last tree value setTransient's fast path looked at (a stored value: immutable), with its
   * shape key and whether a run continues past its base (`joinsFrom`).
   */
  private hotV: V | undefined = undefined;
  private hotKey = -1;
  private hotJoins = false;

  /** DENSIFY and SPARSE for this map (tests lower them to exercise the transitions). */
  private readonly densifyAt: number;
  private readonly sparseAt: number;

  /**
   * @param xops the extent ops (as for a RangeMap); @param shape their shapes; @param tuning
   * thresholds (default DENSIFY, SPARSE; `sparse` must be below `densify`), for tests.
   */
  constructor(
    private readonly xops: RangeValueOps<V>,
    private readonly shape: ExtentShape<V>,
    private readonly tuning: { readonly densify: number; readonly sparse: number } = {
      densify: DENSIFY,
      sparse: SPARSE,
    },
  ) {
    super(xops);
    this.densifyAt = tuning.densify;
    this.sparseAt = tuning.sparse;
    this.tree = new RangeMap<V>(xops);
    this.joinsFrom = shape.joinsFrom ?? alwaysJoins;
  }

  // ---------------------------------------------------------------------------------------------
  // Shapes, chunks and per-key probes

  /** v's shape id (interned on first sight); `k`: its shape key when the caller has it. */
  private sidOf(v: V, k: number = this.shape.key(v)): number {
    let sid = this.sidByKey[k];
    if (sid === undefined) {
      sid = this.tmpl.length + 1;
      if (sid > 0xffff) throw new Error('ExtentMap: too many shapes');
      this.sidByKey[k] = sid;
      // A copy: v may be a caller's scratch record (setTransient).
      this.tmpl.push(this.xops.shift(v, 0));
    }
    return sid;
  }

  /** Can `v`'s shape and bases v.base .. v.base + n - 1 be packed into the slab? */
  private packs(v: V, n: number): boolean {
    return packable(v.base, n) && this.sidOf(v) <= SID_MAX;
  }

  /** The value of shape `sid` with base `base`. */
  private make(sid: number, base: number): V {
    const t = this.tmpl[sid - 1]!;
    if (base === t.base) return t;
    const mk = this.shape.make;
    return mk !== undefined ? mk(t, base) : this.xops.shift(t, base - t.base);
  }

  private chunk(c: number): Chunk | undefined {
    if (c === this.lastC) return this.lastCh;
    const ch = this.chunks.get(c);
    this.lastC = c;
    this.lastCh = ch;
    return ch;
  }

  /** Slab offset of dense chunk c, or -1 (tree mode). */
  private chunkOff(c: number): number {
    if (c === this.lastOc) return this.lastOff;
    const off = this.offs.get(c);
    this.lastOc = c;
    this.lastOff = off;
    return off;
  }

  /** A new empty dense chunk for chunk index c. May reallocate the slab: re-read it after. */
  private addChunk(c: number): Chunk {
    let off = this.slabFree.pop();
    if (off === undefined) {
      const per = SLOT;
      if (this.slabUsed + per > this.slab.length) {
        const grown = new Int32Array(Math.max(per, this.slab.length * 2));
        grown.set(this.slab);
        this.slab = grown;
        const cn = new Int32Array(grown.length / SLOT);
        cn.set(this.cn);
        this.cn = cn;
      }
      off = this.slabUsed;
      this.slabUsed += per;
    }
    const ch = new Chunk(c, off);
    this.chunks.set(c, ch);
    this.offs.set(c, off);
    this.lastOc = -1;
    this.order.set(c, c + 1, ch);
    this.lastC = -1;
    return ch;
  }

  private dropChunk(ch: Chunk): void {
    this.chunks.delete(ch.index);
    this.offs.delete(ch.index);
    this.lastOc = -1;
    this.order.delete(ch.index, ch.index + 1);
    this.denseCovered -= this.cn[ch.off / SLOT]!;
    this.cn[ch.off / SLOT] = 0;
    this.slab.fill(0, ch.off, ch.off + SLOT);
    this.slabFree.push(ch.off);
    this.lastC = -1;
  }

  /** Shape id of key k's value (0 = none); its base goes to this.pBase. */
  private probe(k: number): number {
    if (k < 0 || k >= MAX_KEY) return 0;
    const c = Math.floor(k / CHUNK);
    const off = this.chunkOff(c);
    if (off >= 0) {
      const x = this.slab[off + (k - c * CHUNK)]!;
      if (x === 0) return 0;
      this.pBase = baseOf(x);
      return sidOfPacked(x);
    }
    const v = this.tree.get(k);
    if (v === undefined) return 0;
    this.pBase = v.base;
    return this.sidOf(v);
  }

  /** Does key k+1 (base rb, shape rs) continue the run of key k (base lb, shape ls)? */
  private joins(lb: number, ls: number, rb: number, rs: number): boolean {
    return ls !== 0 && ls === rs && rb === lb + 1 && this.joinsFrom(lb);
  }

  /** joins() on two packed slab values (xl nonzero). */
  private joinsPacked(xl: number, xr: number): boolean {
    return xr === xl + SID_SPAN && this.joinsFrom(baseOf(xl));
  }

  /** Is key k the first key of a maximal entry? */
  private isStart(k: number): boolean {
    const s = this.probe(k);
    if (s === 0) return false;
    const b = this.pBase;
    const ls = this.probe(k - 1);
    return !this.joins(this.pBase, ls, b, s);
  }

  /**
   * The pieces of both stores overlapping [a, b), clipped to it, in key order: tree entries and
   * dense runs (maximal within their chunk). Consecutive pieces may continue one entry.
   */
  private raw(a: number, b: number): Raw<V> {
    const out: Raw<V> = { s: [], e: [], base: [], sid: [], v: [] };
    const dense = this.order.piecesIn(Math.floor(a / CHUNK), Math.ceil(b / CHUNK));
    let di = 0;
    const flushDense = (upTo: number): void => {
      for (; di < dense.length; di++) {
        const ch = dense[di]!.value;
        const c0 = ch.index * CHUNK;
        if (c0 >= upTo) return;
        const lo = Math.max(a, c0) - c0;
        const hi = Math.min(b, c0 + CHUNK) - c0;
        const sd = this.slab;
        const so = ch.off;
        for (let i = lo; i < hi;) {
          const x = sd[so + i]!;
          if (x === 0) {
            i++;
            continue;
          }
          let j = i + 1;
          while (j < hi && this.joinsPacked(sd[so + j - 1]!, sd[so + j]!)) j++;
          out.s.push(c0 + i);
          out.e.push(c0 + j);
          out.base.push(baseOf(x));
          out.sid.push(sidOfPacked(x));
          out.v.push(undefined);
          i = j;
        }
      }
    };
    if (this.tree.size !== 0) {
      this.tree.forEachIn(a, b, (s, e, v) => {
        flushDense(s);
        out.s.push(s);
        out.e.push(e);
        out.base.push(v.base);
        out.sid.push(this.sidOf(v));
        out.v.push(v);
      });
    }
    flushDense(Infinity);
    return out;
  }

  /** Number of maximal-entry starts among keys [a, b). */
  private startsIn(a: number, b: number): number {
    if (!(a < b)) return 0;
    const r = this.raw(a, b);
    let n = 0;
    for (let i = 0; i < r.s.length; i++) {
      const s = r.s[i]!;
      if (s === a) {
        if (this.isStart(a)) n++;
      } else if (!(
        i > 0 &&
        r.e[i - 1] === s &&
        this.joins(r.base[i - 1]! + (s - 1 - r.s[i - 1]!), r.sid[i - 1]!, r.base[i]!, r.sid[i]!)
      )) {
        n++;
      }
    }
    return n;
  }

  /** Number of tree entries overlapping chunk c, counting up to `limit`. */
  private treeEntriesIn(c: number, limit: number): number {
    return this.tree.entriesIn(c * CHUNK, (c + 1) * CHUNK, limit);
  }

  /**
   * Set key k (in chunk c) in the tree when keys k - 1 .. k + 1 all live in the tree, so the
   * tree's entry count moves with ours; densify the chunk once it holds DENSIFY entries.
   */
  private treeSet1(k: number, v: V, c: number, transient = false): void {
    const before = this.tree.size;
    if (transient) this.tree.setTransient(k, k + 1, v);
    else this.tree.set(k, k + 1, v);
    const grown = this.tree.size - before;
    this.cnt += grown;
    if (grown > 0) this.maybeDensify(c);
  }

  /** A single-key write added a tree entry in chunk c: densify it once it holds DENSIFY. */
  private maybeDensify(c: number): void {
    if (this.treeEntriesIn(c, this.densifyAt) >= this.densifyAt) this.densify(c);
  }

  /** Move chunk c's keys from the tree into a new dense chunk (unless a base cannot pack). */
  private densify(c: number): void {
    const c0 = c * CHUNK;
    const pieces = this.tree.piecesIn(c0, c0 + CHUNK);
    for (const p of pieces) if (!this.packs(p.value, p.end - p.start)) return;
    const ch = this.addChunk(c);
    for (const p of pieces) {
      const sid = this.sidOf(p.value);
      const x0 = pack(p.value.base, sid);
      for (let k = p.start; k < p.end; k++)
        this.slab[ch.off + (k - c0)] = x0 + (k - p.start) * SID_SPAN;
      this.cn[ch.off / SLOT] += p.end - p.start;
    }
    this.denseCovered += this.cn[ch.off / SLOT]!;
    this.tree.delete(c0, c0 + CHUNK);
  }

  /** If a dense chunk holds few runs (or none), move it back to the tree. */
  private maybeSparsen(ch: Chunk): void {
    if (this.cn[ch.off / SLOT] === 0) {
      this.dropChunk(ch);
      return;
    }
    const c0 = ch.index * CHUNK;
    const r = this.raw(c0, c0 + CHUNK);
    if (r.s.length > this.sparseAt) return;
    this.toTree(ch, r);
  }

  /** Move a dense chunk's runs `r` (all of them: raw() over the chunk) back to the tree. */
  private toTree(ch: Chunk, r: Raw<V>): void {
    this.dropChunk(ch);
    for (let i = 0; i < r.s.length; i++) {
      this.tree.set(r.s[i]!, r.e[i]!, this.make(r.sid[i]!, r.base[i]!));
    }
  }

  /** Move every dense chunk overlapping keys [start, end) back to the tree. */
  private treeOnly(start: number, end: number): void {
    if (this.order.size === 0) return;
    for (const p of this.order.piecesIn(Math.floor(start / CHUNK), Math.ceil(end / CHUNK))) {
      const c0 = p.value.index * CHUNK;
      this.toTree(p.value, this.raw(c0, c0 + CHUNK));
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Queries

  override get size(): number {
    return this.cnt;
  }

  override totalCovered(): number {
    return this.tree.totalCovered() + this.denseCovered;
  }

  override get(k: number): V | undefined {
    if (this.chunks.size === 0 || !(k >= 0 && k < MAX_KEY)) return this.tree.get(k);
    const c = Math.floor(k / CHUNK);
    const off = this.chunkOff(c);
    if (off < 0) return this.tree.get(k);
    const x = this.slab[off + (k - c * CHUNK)]!;
    return x === 0 ? undefined : this.make(sidOfPacked(x), baseOf(x));
  }

  /** The raw piece containing key k: [s, e) with value v at s. */
  private rawAt(k: number): { s: number; e: number; v: V } | undefined {
    const c = Math.floor(k / CHUNK);
    const ch = k >= 0 && k < MAX_KEY ? this.chunk(c) : undefined;
    if (ch === undefined) {
      const t = this.tree.entryAt(k);
      return t === undefined ? undefined : { s: t.start, e: t.end, v: t.value };
    }
    const c0 = c * CHUNK;
    let i = k - c0;
    const sd = this.slab;
    const so = ch.off;
    if (sd[so + i] === 0) return undefined;
    let j = i + 1;
    while (i > 0 && sd[so + i - 1] !== 0 && this.joinsPacked(sd[so + i - 1]!, sd[so + i]!)) i--;
    while (j < CHUNK && this.joinsPacked(sd[so + j - 1]!, sd[so + j]!)) j++;
    const x = sd[so + i]!;
    return { s: c0 + i, e: c0 + j, v: this.make(sidOfPacked(x), baseOf(x)) };
  }

  /** Does key k (base kb, shape ks) continue into key k+1? */
  private joinsNext(k: number, kb: number, ks: number): boolean {
    const rs = this.probe(k + 1);
    return this.joins(kb, ks, this.pBase, rs);
  }

  override entryAt(k: number): RangeEntry<V> | undefined {
    const p = this.rawAt(k);
    if (p === undefined) return undefined;
    let { s, e, v } = p;
    // Walk left while the key before s continues into s.
    for (;;) {
      const ls = this.probe(s - 1);
      if (!this.joins(this.pBase, ls, v.base, this.sidOf(v))) break;
      const q = this.rawAt(s - 1)!;
      s = q.s;
      v = q.v;
    }
    const sid = this.sidOf(v);
    for (;;) {
      const lastBase = v.base + (e - 1 - s);
      if (!this.joinsNext(e - 1, lastBase, sid)) break;
      e = this.rawAt(e)!.e;
    }
    return { start: s, end: e, value: v };
  }

  /** Least key >= x with a value, or -1. */
  private nextKey(x: number): number {
    let best = -1;
    if (this.tree.entryAt(x) !== undefined) best = x;
    else {
      const t = this.tree.ceilEntry(x);
      if (t !== undefined) best = t.start;
    }
    if (this.order.size !== 0) {
      for (const p of this.order.piecesIn(Math.floor(x / CHUNK), MAX_KEY)) {
        const ch = p.value;
        const c0 = ch.index * CHUNK;
        if (best >= 0 && c0 >= best) break;
        for (let i = Math.max(0, x - c0); i < CHUNK; i++) {
          if (this.slab[ch.off + i] !== 0) {
            if (best < 0 || c0 + i < best) best = c0 + i;
            return best;
          }
        }
      }
    }
    return best;
  }

  /** Greatest key < x with a value, or -1. */
  private prevKey(x: number): number {
    let best = -1;
    const t = this.tree.floorEntry(x - 1);
    if (t !== undefined) best = Math.min(t.end, x) - 1;
    if (this.order.size !== 0) {
      let c = Math.floor((x - 1) / CHUNK);
      for (;;) {
        const p = this.order.floorEntry(c);
        if (p === undefined) break;
        const ch = p.value;
        const c0 = ch.index * CHUNK;
        if (c0 + CHUNK - 1 <= best) break;
        for (let i = Math.min(CHUNK, x - c0) - 1; i >= 0; i--) {
          if (this.slab[ch.off + i] !== 0) return Math.max(best, c0 + i);
        }
        c = ch.index - 1;
      }
    }
    return best;
  }

  override floorEntry(k: number): RangeEntry<V> | undefined {
    const e = this.entryAt(k);
    if (e !== undefined) return e;
    if (!(k >= 0)) return undefined;
    const p = this.prevKey(Math.min(Math.floor(k) + 1, MAX_KEY));
    return p < 0 ? undefined : this.entryAt(p);
  }

  override ceilEntry(k: number): RangeEntry<V> | undefined {
    let x = Math.max(0, Math.ceil(k));
    const e = this.entryAt(x);
    if (e !== undefined) {
      if (e.start >= k) return e;
      x = e.end;
    }
    if (x >= MAX_KEY) return undefined;
    const n = this.nextKey(x);
    return n < 0 ? undefined : this.entryAt(n);
  }

  override first(): RangeEntry<V> | undefined {
    const n = this.nextKey(0);
    return n < 0 ? undefined : this.entryAt(n);
  }

  override last(): RangeEntry<V> | undefined {
    const p = this.prevKey(MAX_KEY);
    return p < 0 ? undefined : this.entryAt(p);
  }

  override forEachIn(
    start: number,
    end: number,
    cb: (s: number, e: number, v: V) => void | boolean,
  ): void {
    if (!(start < end)) return;
    const ver = this.ver;
    const mutated = (): never => {
      throw new Error('RangeMap mutated inside forEachIn callback');
    };
    if (this.order.size === 0 || !this.order.anyIn(Math.floor(start / CHUNK), end / CHUNK)) {
      // No dense chunk in range: the tree's entries are the maximal entries there.
      this.tree.forEachIn(start, end, (s, e, v) => {
        const r = cb(s, e, v);
        if (this.ver !== ver) mutated();
        return r;
      });
      return;
    }
    const r = this.raw(Math.max(0, start), Math.min(end, MAX_KEY));
    const n = r.s.length;
    for (let i = 0; i < n;) {
      const s = r.s[i]!;
      const sid = r.sid[i]!;
      const b0 = r.base[i]!;
      let e = r.e[i]!;
      const v = r.v[i] ?? this.make(sid, b0);
      let j = i + 1;
      while (j < n && r.s[j] === e && this.joins(b0 + (e - 1 - s), sid, r.base[j]!, r.sid[j]!)) {
        e = r.e[j]!;
        j++;
      }
      const res = cb(s, e, v);
      if (this.ver !== ver) mutated();
      if (res === false) return;
      i = j;
    }
  }

  override entriesIn(start: number, end: number, limit: number): number {
    let n = 0;
    if (limit > 0) this.forEachIn(start, end, () => ++n < limit);
    return n;
  }

  // RangeMap's piecesIn and gapsIn only walk this.forEachIn, which is ours: they serve as they are.
  override piecesIn(start: number, end: number): RangeEntry<V>[] {
    return super.piecesIn(start, end);
  }

  override gapsIn(start: number, end: number): Array<{ start: number; end: number }> {
    return super.gapsIn(start, end);
  }

  override covers(start: number, end: number): boolean {
    if (!(start < end)) return true;
    return this.countIn(start, end) === end - start;
  }

  override anyIn(start: number, end: number): boolean {
    if (!(start < end)) return false;
    if (this.tree.anyIn(start, end)) return true;
    if (this.order.size === 0) return false;
    let found = false;
    this.order.forEachIn(Math.floor(start / CHUNK), Math.ceil(end / CHUNK), (_a, _b, ch) => {
      const c0 = ch.index * CHUNK;
      const hi = Math.min(end, c0 + CHUNK) - c0;
      for (let i = Math.max(0, Math.ceil(start) - c0); i < hi; i++) {
        if (this.slab[ch.off + i] !== 0) {
          found = true;
          return false;
        }
      }
      return true;
    });
    return found;
  }

  override countIn(start: number, end: number): number {
    if (!(start < end)) return 0;
    let total = this.tree.countIn(start, end);
    if (this.order.size === 0) return total;
    this.order.forEachIn(Math.floor(start / CHUNK), Math.ceil(end / CHUNK), (_a, _b, ch) => {
      const c0 = ch.index * CHUNK;
      const lo = Math.max(0, Math.ceil(start) - c0);
      const hi = Math.min(end, c0 + CHUNK) - c0;
      if (lo <= 0 && hi >= CHUNK) total += this.cn[ch.off / SLOT]!;
      else for (let i = lo; i < hi; i++) if (this.slab[ch.off + i] !== 0) total++;
    });
    return total;
  }

  override *entries(): IterableIterator<RangeEntry<V>> {
    const ver = this.ver;
    for (const e of this.piecesIn(0, MAX_KEY)) {
      yield e;
      if (this.ver !== ver) throw new Error('RangeMap mutated during entries() iteration');
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Mutation

  /**
   * RangeMap's `setTransient`: a single-key write that lands in a dense chunk keeps no object and
   * one that extends a tree entry in place keeps none either; every other write stores a copy.
   * `shapeKey`: `shape.key(v)` when the caller has it at hand (saves the call on the sequential
   * path); it must be exactly that.
   */
  override setTransient(start: number, end: number, v: V, shapeKey?: number): void {
    if (end === start + 1 && this.chunks.size === 0) {
      // Sequential faults: the key after the tree's hot entry, which v continues. The tree would
      // ask ops.canMerge(hot value, length, v); for extent ops under the shape contract that is
      // the base continuing, the same shape and joinsFrom of the entry's first base (spteOps'
      // canMerge refuses a left value at the zero page), decided here without a call through
      // the ops (from the tree's code, shared by every map, that call is a generic one). The
      // entry count is unchanged: the new key joins an entry.
      const hs = this.tree.hotRunEndingAt(start, end);
      if (hs >= 0) {
        const hv = this.tree.hotValue();
        if (hv !== this.hotV) {
          // Stored values are immutable: their shape is computed once per entry.
          this.hotV = hv;
          this.hotKey = this.shape.key(hv);
          this.hotJoins = this.joinsFrom(hv.base);
        }
        if (
          v.base === hv.base + (start - hs) &&
          this.hotJoins &&
          (shapeKey ?? this.shape.key(v)) === this.hotKey
        ) {
          checkRange(start, end);
          this.ver++;
          this.onChange?.(start, end);
          this.tree.extendHotTo(start, end);
          return;
        }
      }
    }
    this.setTransientSlow(start, end, v, shapeKey);
  }

  /** setTransient when v does not simply continue the tree's hot entry. */
  private setTransientSlow(start: number, end: number, v: V, shapeKey: number | undefined): void {
    if (end === start + 1 && packable(v.base, 1)) {
      const c = Math.floor(start / CHUNK);
      if (this.chunks.size === 0 || this.chunkOff(c) < 0) {
        const i = start - c * CHUNK;
        if (
          this.chunks.size === 0 ||
          ((i !== 0 || this.chunkOff(c - 1) < 0) && (i !== CHUNK - 1 || this.chunkOff(c + 1) < 0))
        ) {
          // Keys k - 1 .. k + 1 all live in the tree (see set()).
          checkRange(start, end);
          this.ver++;
          this.onChange?.(start, end);
          this.treeSet1(start, v, c, true);
          return;
        }
      } else if (this.denseSetTransient(start, c, v, shapeKey)) return;
    }
    this.set(start, end, this.xops.shift(v, 0));
  }

  /**
   * setTransient of key k in dense chunk c (random-order faults): set()'s dense path, keeping
   * nothing. False (nothing done) when v's shape does not pack.
   */
  private denseSetTransient(k: number, c: number, v: V, shapeKey: number | undefined): boolean {
    const sid = this.sidOf(v, shapeKey);
    if (sid > SID_MAX) return false;
    checkRange(k, k + 1);
    this.ver++;
    this.onChange?.(k, k + 1);
    this.denseSet1(this.chunkOff(c), k - c * CHUNK, k, v.base, sid);
    return true;
  }

  override set(start: number, end: number, v: V): void {
    if (end === start + 1 && this.chunks.size === 0) {
      // One key and no dense chunk anywhere (sequential faults): the tree's entry count is
      // ours; only the densify rule below is added.
      checkRange(start, end);
      this.ver++;
      this.onChange?.(start, end);
      this.treeSet1(start, v, Math.floor(start / CHUNK));
      return;
    }
    checkRange(start, end);
    if (!(start < end)) return;
    if (end > start + 1 && !this.joinsFrom(v.base)) {
      // A RangeMap keeps such a range as one entry although its first key does not continue
      // into the next one; per-key storage cannot represent that (and the model never does it:
      // only the zero page, mapped 4K, has such a base).
      throw new RangeError(`ExtentMap: a value with base ${v.base} must be set one key at a time`);
    }
    this.ver++;
    this.onChange?.(start, end);
    const c = Math.floor(start / CHUNK);
    // A base that cannot pack: the chunks it lands in go back to the tree first.
    if (!this.packs(v, end - start)) this.treeOnly(start, end);
    else if (end === start + 1) {
      const off = this.chunkOff(c);
      if (off >= 0) {
        this.denseSet1(off, start - c * CHUNK, start, v.base, this.sidOf(v));
        return;
      }
    }
    if (end === start + 1) {
      const i = start - c * CHUNK;
      if ((i !== 0 || this.chunkOff(c - 1) < 0) && (i !== CHUNK - 1 || this.chunkOff(c + 1) < 0)) {
        this.treeSet1(start, v, c);
        return;
      }
    }
    const before = this.startsIn(start, Math.min(end + 1, MAX_KEY));
    const cEnd = Math.ceil(end / CHUNK);
    let ts = start;
    let te = end;
    const partial: Chunk[] = [];
    if (this.order.size !== 0) {
      for (const p of this.order.piecesIn(c, cEnd)) {
        const ch = p.value;
        const c0 = ch.index * CHUNK;
        if (start <= c0 && c0 + CHUNK <= end) {
          this.dropChunk(ch);
          continue;
        }
        // A partly covered chunk: the first and/or the last one (v's bases pack: see above).
        const x0 = pack(v.base, this.sidOf(v));
        const lo = Math.max(start, c0);
        const hi = Math.min(end, c0 + CHUNK);
        for (let k = lo; k < hi; k++) {
          const i = ch.off + (k - c0);
          if (this.slab[i] === 0) {
            this.cn[ch.off / SLOT]++;
            this.denseCovered++;
          }
          this.slab[i] = x0 + (k - start) * SID_SPAN;
        }
        if (c0 <= start) ts = Math.max(ts, c0 + CHUNK);
        if (c0 + CHUNK >= end) te = Math.min(te, c0);
        partial.push(ch);
      }
    }
    if (ts < te) this.tree.set(ts, te, ts === start ? v : this.xops.shift(v, ts - start));
    for (const ch of partial) this.maybeSparsen(ch);
    this.cnt += this.startsIn(start, Math.min(end + 1, MAX_KEY)) - before;
  }

  /**
   * Set key k (index i of the dense chunk at slab offset so) to the value of shape `ns` with base
   * `nb`, which pack (the random-order fault path: no allocation, no search).
   */
  private denseSet1(so: number, i: number, k: number, nb: number, ns: number): void {
    const sd = this.slab;
    const jf = this.joinsFrom;
    let ls: number;
    let lb: number;
    if (i > 0) {
      const x = sd[so + i - 1]!;
      ls = sidOfPacked(x);
      lb = baseOf(x);
    } else {
      ls = this.probe(k - 1);
      lb = this.pBase;
    }
    let rs: number;
    let rb: number;
    if (i < CHUNK - 1) {
      const x = sd[so + i + 1]!;
      rs = sidOfPacked(x);
      rb = baseOf(x);
    } else {
      rs = this.probe(k + 1);
      rb = this.pBase;
    }
    const xo = sd[so + i]!;
    const os = sidOfPacked(xo);
    const ob = baseOf(xo);
    // Run starts at k and k + 1 before and after (see joins()).
    let d = 0;
    if (os !== 0) {
      if (!(ls === os && ob === lb + 1 && jf(lb))) d--;
      if (rs !== 0 && !(rs === os && rb === ob + 1 && jf(ob))) d--;
    } else {
      this.cn[so / SLOT]++;
      this.denseCovered++;
      if (rs !== 0) d--; // k + 1 started a run
    }
    if (!(ls === ns && nb === lb + 1 && jf(lb))) d++;
    if (rs !== 0 && !(rs === ns && rb === nb + 1 && jf(nb))) d++;
    sd[so + i] = pack(nb, ns);
    this.cnt += d;
  }

  override delete(start: number, end: number): void {
    checkRange(start, end);
    if (!(start < end)) return;
    this.ver++;
    this.onChange?.(start, end);
    const c = Math.floor(start / CHUNK);
    if (end === start + 1) {
      const ch = this.chunk(c);
      if (ch !== undefined) {
        const i = start - c * CHUNK;
        if (this.slab[ch.off + i] === 0) return;
        const before = (this.isStart(start) ? 1 : 0) + (this.isStart(end) ? 1 : 0);
        this.slab[ch.off + i] = 0;
        this.denseCovered--;
        this.cnt += (this.isStart(end) ? 1 : 0) - before;
        if (--this.cn[ch.off / SLOT]! === 0) this.dropChunk(ch);
        return;
      }
    }
    const before = this.startsIn(start, Math.min(end + 1, MAX_KEY));
    this.tree.delete(start, end);
    if (this.order.size !== 0) {
      for (const p of this.order.piecesIn(c, Math.ceil(end / CHUNK))) {
        const ch = p.value;
        const c0 = ch.index * CHUNK;
        if (start <= c0 && c0 + CHUNK <= end) {
          this.dropChunk(ch);
          continue;
        }
        const hi = Math.min(end, c0 + CHUNK);
        for (let k = Math.max(start, c0); k < hi; k++) {
          const i = k - c0;
          if (this.slab[ch.off + i] !== 0) {
            this.slab[ch.off + i] = 0;
            this.cn[ch.off / SLOT]--;
            this.denseCovered--;
          }
        }
        this.maybeSparsen(ch);
      }
    }
    this.cnt += this.startsIn(start, Math.min(end + 1, MAX_KEY)) - before;
  }

  override clear(): void {
    this.ver++;
    this.onChange?.(0, MAX_KEY);
    this.tree.clear();
    this.chunks = new Map();
    this.slab = EMPTY_I32;
    this.cn = EMPTY_I32;
    this.offs = new ChunkOffsets();
    this.lastOc = -1;
    this.slabFree = [];
    this.slabUsed = 0;
    this.order = new RangeMap<Chunk>();
    this.cnt = 0;
    this.denseCovered = 0;
    this.lastC = -1;
    this.lastCh = undefined;
  }

  override emptyLike(): ExtentMap<V> {
    return new ExtentMap<V>(this.xops, this.shape, this.tuning);
  }

  override clone(): ExtentMap<V> {
    const m = new ExtentMap<V>(this.xops, this.shape, this.tuning);
    m.tree = this.tree.clone();
    for (const p of this.order.entries()) {
      const ch = p.value;
      const nc = m.addChunk(ch.index);
      m.slab.set(this.slab.subarray(ch.off, ch.off + SLOT), nc.off);
      m.cn[nc.off / SLOT] = this.cn[ch.off / SLOT]!;
    }
    m.cnt = this.cnt;
    m.denseCovered = this.denseCovered;
    m.sidByKey = this.sidByKey.slice();
    m.tmpl = this.tmpl.slice();
    return m;
  }

  // The hot-entry hooks are for the map that owns a tree (this one calls them on its own): an
  // ExtentMap keeps no hot entry of its own, so it never offers one to extend.
  override hotRunEndingAt(_start: number, _end: number): number {
    return -1;
  }

  override hotValue(): V {
    throw new Error('ExtentMap: no hot entry (hotRunEndingAt is always -1)');
  }

  override extendHotTo(_start: number, _end: number): void {
    throw new Error('ExtentMap: no hot entry (hotRunEndingAt is always -1)');
  }

  // ---------------------------------------------------------------------------------------------
  // Diagnostics

  override treeStats(): {
    height: number;
    leaves: number;
    internals: number;
    leafCapacity: number;
  } {
    return this.tree.treeStats();
  }

  /** Number of dense chunks (for benchmarks and tests). */
  denseChunks(): number {
    return this.chunks.size;
  }

  /** Verify the structure (tree, chunks, counters, maximal entries); throws on a violation. */
  override checkInvariants(): void {
    const fail = (msg: string): never => {
      throw new Error(`ExtentMap invariant violated: ${msg}`);
    };
    this.tree.checkInvariants();
    this.order.checkInvariants();
    if (this.order.size !== this.chunks.size) fail('chunk index size');
    let dense = 0;
    for (const [c, ch] of this.chunks) {
      if (ch.index !== c || this.order.get(c) !== ch) fail(`chunk ${c} not indexed`);
      let n = 0;
      for (let i = 0; i < CHUNK; i++) {
        const x = this.slab[ch.off + i]!;
        if (x !== 0) {
          n++;
          const sid = sidOfPacked(x);
          if (!(sid >= 1 && sid <= this.tmpl.length)) fail('unknown shape');
          if (!packable(baseOf(x), 1)) fail('base out of the packed range');
        }
      }
      if (n !== this.cn[ch.off / SLOT]) fail(`chunk ${c} count != ${n}`);
      if (n === 0) fail(`empty chunk ${c}`);
      if (this.tree.anyIn(c * CHUNK, (c + 1) * CHUNK)) fail(`tree holds keys of dense chunk ${c}`);
      dense += n;
    }
    if (dense !== this.denseCovered) fail('dense covered');
    const all = this.piecesIn(0, MAX_KEY);
    if (all.length !== this.cnt) fail(`size ${this.cnt} != ${all.length}`);
    for (let i = 1; i < all.length; i++) {
      const a = all[i - 1]!;
      const b = all[i]!;
      if (a.end === b.start && this.xops.canMerge(a.value, a.end - a.start, b.value))
        fail(`mergeable neighbours meet at ${b.start}`);
    }
  }
}
