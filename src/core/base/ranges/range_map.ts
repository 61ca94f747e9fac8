/**
 * RangeMap: a sorted map from half-open integer key ranges `[start, end)` to values.
 *
 * This is the model's stand-in for the kernel's xarrays and maple trees. Memory is always
 * represented as ranges, never as per-page arrays: a 64 TiB guest costs what its distinct ranges
 * cost, and no operation loops over individual keys.
 *
 * ## Structure
 *
 * A B+tree of uniform depth `height` (0 = the root is a leaf). Nodes are not JS objects: they are
 * integer ids into pooled typed arrays ("slabs"), so a lookup follows array indices instead of
 * object -> array-header -> backing-store pointers. On big maps lookups are bound by memory
 * latency, and this layout roughly halves the cache misses per lookup.
 *
 * - Leaf `l` owns slots `l * LEAF_MAX + j` (j < its count) of the parallel slabs `lk` (keys) and
 *   `lv` (values): entry j is `[lk[2s], lk[2s + 1]) -> lv[s]` with `s = l * LEAF_MAX + j`. Start
 *   and end sit side by side so the end shares the cache line the search just read. `lmeta`
 *   holds per leaf its count, `next` and `prev` leaf (leaves are linked in key order, so range
 *   scans never climb the tree) and `parent`.
 * - Internal node `x` owns slots `x * INTERNAL_MAX + i` of `ik` (keys) and `ic` (child ids; leaf
 *   ids on the level just above the leaves, internal ids elsewhere); `imeta` holds its count and
 *   parent. `ik[...i]` is EXACTLY the smallest entry start in the subtree of child i. Descending
 *   for key k picks the last child whose key is <= k (or child 0), so the leaf reached holds the
 *   floor entry of k (the entry with the greatest start <= k), if there is one.
 * - When the first start of a leaf changes, the new key is written into its parent and, while the
 *   node is its parent's child 0, further up (`propagateUp`): O(height).
 * - Pools double when full (amortised O(1) per node allocation); freed ids go to a free list and
 *   their value slots are cleared so no stale value stays reachable. `clear()` shrinks the pools.
 *
 * ## Invariants (all checked by {@link RangeMap.checkInvariants})
 *
 * 1. Entries are non-empty (`start < end`), sorted, and non-overlapping (`end <= next start`,
 *    also across leaf boundaries).
 * 2. Maximal coalescing: no two touching entries (`end === next start`) may merge per
 *    `ops.canMerge`. `set` is the only operation that creates touching pairs, and it coalesces at
 *    both ends of the range it writes; `delete` only creates gaps.
 * 3. Only the root may be empty (then it is an empty leaf and the map is empty). Internal nodes
 *    are never empty and the root, if internal, has at least two children (single-child roots are
 *    collapsed). Deletion may leave underfull nodes (an underfull leaf is merged into a sibling when
 *    the two fit together; internal nodes are not rebalanced), but empty nodes are always removed.
 * 4. `count` and `covered` always equal the number of entries and the sum of their lengths.
 *
 * ## Costs
 *
 * Lookups descend once: O(log n). Updates descend a constant number of times and then touch only
 * the k entries they overlap: O(log n + k). Splits and removals shift at most one node's slots
 * (<= 64). A "finger" remembers the last leaf reached and the key span that leads to it; a lookup
 * whose key falls in that span skips the descent, which makes sequential access (the fault
 * handler populating consecutive pages, each `set(k, k+1, v)` extending the previous entry) O(1).
 *
 * Splits are half/half, except that appending past the end of the rightmost leaf (or prepending
 * before the leftmost one) leaves the old node full, so maps built in key order are ~100% packed.
 *
 * ## Values
 *
 * Values are immutable from the map's point of view: the map stores, copies and returns them by
 * reference and never mutates them. When an entry is cut, the kept tail gets
 * `ops.shift(value, delta)`; `shift(v, 0)` must mean `v` (the map skips the call then). `ops` must
 * be consistent: merging is decided by `canMerge` on the entries' current values, and cutting an
 * entry must not change whether it could merge with its other neighbour (true for extents).
 *
 * This module is pure (no Node APIs, clocks, or randomness).
 */

/** How a map's values behave when entries are cut and when neighbours may coalesce. */
const EMPTY_F64 = new Float64Array(0);
const EMPTY_I32 = new Int32Array(0);

export interface RangeValueOps<V> {
  /** Value for the sub-range that begins `delta` keys after an entry's start (extents: base + delta). */
  shift(v: V, delta: number): V;
  /** May `right`, which starts exactly where `left` (of length `leftLen`) ends, be coalesced into left? */
  canMerge(left: V, leftLen: number, right: V): boolean;
}

/** Plain values: shift is identity, merge when `===`. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const plainOps: RangeValueOps<any> = {
  shift: (v) => v,
  canMerge: (left, _leftLen, right) => left === right,
};

/**
 * Ops for extent values `{ base: number, ... }` whose per-key value is `base + (key - start)`
 * (e.g. a run of pfns). `shift` returns a new object (a shallow copy, so use plain objects, not
 * class instances) with `base + delta`; `canMerge` requires `right.base === left.base + leftLen`
 * and `eqRest(left, right)`, which compares every other field.
 */
export function extentOps<V extends { readonly base: number }>(
  eqRest: (a: V, b: V) => boolean,
  make?: (t: V, base: number) => V,
): RangeValueOps<V> {
  return {
    // `make` (optional): the value of t's fields with another base, as a literal that lists the
    // fields in the order the spread would keep; much faster than the spread.
    shift:
      make === undefined
        ? (v, delta) => ({ ...v, base: v.base + delta })
        : (v, delta) => make(v, v.base + delta),
    canMerge: (left, leftLen, right) => right.base === left.base + leftLen && eqRest(left, right),
  };
}

/** One stored (or clipped) entry: keys `[start, end)` map to `value`. */
export type RangeEntry<V> = { readonly start: number; readonly end: number; readonly value: V };

/** Largest valid key bound: keys are integers in [0, 2^53]; `end` may be 2^53 itself. */
export const MAX_KEY = 2 ** 53;

/** Maximum entries in a leaf (slots per leaf in the slabs). */
const LEAF_MAX = 64;
/** Maximum children of an internal node. */
const INTERNAL_MAX = 64;
/** A leaf with fewer entries than this after a removal tries to merge with a sibling... */
const LEAF_UNDERFULL = 16;
/** ...if the two together have at most this many entries (slack avoids split/merge ping-pong). */
const LEAF_MERGE_MAX = 48;

/** Trees with at least this many internal levels use the leaf hints (see RangeMap.hint). */
const HINT_MIN_HEIGHT = 2;

/** "No node". */
const NIL = -1;

// Leaf metadata: lmeta[leaf * L_META + field].
const L_COUNT = 0;
const L_NEXT = 1;
const L_PREV = 2;
const L_PARENT = 3;
const L_META = 4;
// Internal-node metadata: imeta[node * I_META + field].
const I_COUNT = 0;
const I_PARENT = 1;
const I_META = 2;

/** Split placement: see insertAt / insertChild. */
const SPLIT_HALF = 0;
const SPLIT_APPEND = 1;
const SPLIT_PREPEND = 2;
type SplitMode = typeof SPLIT_HALF | typeof SPLIT_APPEND | typeof SPLIT_PREPEND;

function checkRange(start: number, end: number): void {
  if (!(Number.isInteger(start) && Number.isInteger(end) && start >= 0 && end <= MAX_KEY)) {
    throw new RangeError(`RangeMap: invalid key range [${start}, ${end})`);
  }
}

/**
 * A sorted map from half-open integer key ranges `[start, end)` to values, stored as a B+tree of
 * maximal entries. Keys are integers in [0, 2^53]. See the module comment for the structure.
 *
 * Mutators throw `RangeError` for non-integer, negative, or > 2^53 keys; an empty range
 * (`start >= end`) is a no-op. Queries accept any number.
 */
export class RangeMap<V> {
  // Leaf pool.
  private lk!: Float64Array;
  private lv!: Array<V | undefined>;
  private lmeta!: Int32Array;
  private lcap = 0;
  private lused = 0;
  private lfree: number[] = [];
  // Internal-node pool.
  private ik!: Float64Array;
  private ic!: Int32Array;
  private imeta!: Int32Array;
  private icap = 0;
  private iused = 0;
  private ifree: number[] = [];

  /** Root node id: a leaf id when height is 0, else an internal id. */
  private root = 0;
  /** Number of internal levels above the leaves. */
  private height = 0;
  private count = 0;
  private covered = 0;
  /**
   * Last leaf reached by a descent, and the key span [fingerLo, fingerHi) for which a descent would
   * reach it again (-Infinity / Infinity at the edges). The bounds come from the separators seen
   * on the way down, so a hit costs two comparisons and touches no other node. Any split or
   * removal of a leaf empties the span; a change of the first key of the finger or of its next
   * leaf updates the matching bound (see propagateLeafFirstKey).
   */
  private finger = 0;
  private fingerLo = -Infinity;
  private fingerHi = Infinity;
  /**
   * The slot of the entry a `get` or `set` last found or wrote, or -1: the next `get` of a key in
   * it, or a `set` that extends it to the right (consecutive single-key writes: the sequential
   * fault path), skips the search. Slots move only in structural changes, which happen only in
   * `set` (its slow path), `delete` and `clear`: each forgets the slot first.
   */
  private hot = -1;
  /**
   * Leaf hints for random access on tall trees: `hint[(k * hintScale) & (length - 1)]` is the
   * leaf that a lookup of some key of that key block last reached (or NIL). A hint is only a
   * guess: it is used when the leaf is live and k lies in its exact span or its neighbour's (see
   * findLeaf), so stale, freed or reused ids are harmless and no mutation has to maintain the
   * table. Empty until the tree has HINT_MIN_HEIGHT levels of internal nodes; then twice the
   * leaf pool's capacity (8 bytes per leaf slot), so memory stays proportional to the entries.
   * Blocks (`hintScale` = 2^-shift) are about half a leaf's mean key span when the table is sized.
   */
  private hint: Int32Array = EMPTY_I32;
  private hintScale = 1;
  /** Bumped by every mutation; iteration uses it to detect forbidden mutation. */
  private version = 0;
  /**
   * Told the key range of every mutation (`clear`: the whole key space) before it happens; the
   * change-driven invariant checker uses it to know what an op touched. Unset by default.
   */
  onChange: ((start: number, end: number) => void) | undefined = undefined;

  /**
   * `ops` is {@link plainOps}, whose shift is the identity: `get` returns the stored value without
   * calling it (a call through `ops` from this shared code is a generic call on every lookup).
   */
  private readonly plain: boolean;

  /** @param ops how values shift and coalesce; default {@link plainOps}. */
  constructor(private readonly ops: RangeValueOps<V> = plainOps) {
    this.plain = ops === plainOps;
    this.reset();
  }

  /** Number of stored entries (after coalescing). */
  get size(): number {
    return this.count;
  }

  /** Sum of `end - start` over all entries (number of keys with a value). O(1). */
  totalCovered(): number {
    return this.covered;
  }

  // ---------------------------------------------------------------------------------------------
  // Pools

  /** Fresh, minimal pools holding one empty root leaf. */
  private reset(): void {
    this.lk = new Float64Array(2 * LEAF_MAX);
    this.lv = [];
    this.lmeta = new Int32Array(L_META);
    this.lcap = 1;
    this.lused = 0;
    this.lfree = [];
    // Internal pools start empty and shared (most maps never grow past one leaf); growth
    // allocates fresh arrays.
    this.ik = EMPTY_F64;
    this.ic = EMPTY_I32;
    this.imeta = EMPTY_I32;
    this.icap = 0;
    this.iused = 0;
    this.ifree = [];
    this.root = this.allocLeaf();
    this.height = 0;
    this.count = 0;
    this.covered = 0;
    this.finger = this.root;
    this.fingerLo = -Infinity;
    this.fingerHi = Infinity;
    this.hint = EMPTY_I32;
  }

  /** A new empty, unlinked leaf. May reallocate the leaf slabs: re-read them afterwards. */
  private allocLeaf(): number {
    let id = this.lfree.pop();
    if (id === undefined) {
      if (this.lused === this.lcap) {
        const cap = this.lcap * 2;
        const lk = new Float64Array(cap * 2 * LEAF_MAX);
        lk.set(this.lk);
        this.lk = lk;
        const lmeta = new Int32Array(cap * L_META);
        lmeta.set(this.lmeta);
        this.lmeta = lmeta;
        this.lcap = cap;
      }
      id = this.lused++;
      const lv = this.lv;
      for (let j = 0; j < LEAF_MAX; j++) lv.push(undefined);
    }
    const m = this.lmeta;
    const b = id * L_META;
    m[b + L_COUNT] = 0;
    m[b + L_NEXT] = NIL;
    m[b + L_PREV] = NIL;
    m[b + L_PARENT] = NIL;
    return id;
  }

  /** Return an unlinked leaf to the pool, dropping its value references. */
  private freeLeaf(id: number): void {
    const lv = this.lv;
    const b = id * LEAF_MAX;
    for (let j = 0; j < LEAF_MAX; j++) lv[b + j] = undefined;
    const m = this.lmeta;
    m[id * L_META + L_COUNT] = 0;
    m[id * L_META + L_NEXT] = NIL;
    m[id * L_META + L_PREV] = NIL;
    m[id * L_META + L_PARENT] = NIL;
    this.lfree.push(id);
  }

  /** A new empty internal node. May reallocate the internal slabs: re-read them afterwards. */
  private allocInternal(): number {
    let id = this.ifree.pop();
    if (id === undefined) {
      if (this.iused === this.icap) {
        const cap = this.icap === 0 ? 1 : this.icap * 2;
        const ik = new Float64Array(cap * INTERNAL_MAX);
        ik.set(this.ik);
        this.ik = ik;
        const ic = new Int32Array(cap * INTERNAL_MAX);
        ic.set(this.ic);
        this.ic = ic;
        const imeta = new Int32Array(cap * I_META);
        imeta.set(this.imeta);
        this.imeta = imeta;
        this.icap = cap;
      }
      id = this.iused++;
    }
    this.imeta[id * I_META + I_COUNT] = 0;
    this.imeta[id * I_META + I_PARENT] = NIL;
    return id;
  }

  private freeInternal(id: number): void {
    this.imeta[id * I_META + I_COUNT] = 0;
    this.imeta[id * I_META + I_PARENT] = NIL;
    this.ifree.push(id);
  }

  // ---------------------------------------------------------------------------------------------
  // Lookup

  /** The leaf holding the floor entry of k (or the leftmost leaf if k precedes every entry). */
  private findLeaf(k: number): number {
    if (k >= this.fingerLo && k < this.fingerHi) return this.finger;
    if (this.height < HINT_MIN_HEIGHT) return this.descend(k);
    // A descent reaches leaf L iff firstKey(L) <= k (or L is the leftmost leaf) and k <
    // firstKey(next(L)) (or L is the rightmost leaf): check the hinted leaf against exactly that,
    // which costs its first key and its successor's instead of one search per internal level.
    let hint = this.hint;
    if (hint.length < 2 * this.lcap) hint = this.resizeHints();
    const h = (k * this.hintScale) & (hint.length - 1);
    const leaf = hint[h];
    if (leaf !== NIL) {
      const lmeta = this.lmeta;
      const mb = leaf * L_META;
      // Freed leaves have count 0; a live leaf of a tree with internal nodes never has.
      if (lmeta[mb + L_COUNT] !== 0) {
        const lk = this.lk;
        const prev = lmeta[mb + L_PREV];
        const next = lmeta[mb + L_NEXT];
        const lo = prev === NIL ? -Infinity : lk[2 * leaf * LEAF_MAX];
        const hi = next === NIL ? Infinity : lk[2 * next * LEAF_MAX];
        if (k >= lo && k < hi) {
          this.finger = leaf;
          this.fingerLo = lo;
          this.fingerHi = hi;
          return leaf;
        }
        // The hinted leaf was split (or a neighbour merged away) since: try the adjacent leaf.
        if (k >= hi) {
          const nn = lmeta[next * L_META + L_NEXT];
          const hi2 = nn === NIL ? Infinity : lk[2 * nn * LEAF_MAX];
          if (k < hi2) {
            hint[h] = next;
            this.finger = next;
            this.fingerLo = hi;
            this.fingerHi = hi2;
            return next;
          }
        } else if (k < lo) {
          const pp = lmeta[prev * L_META + L_PREV];
          const lo2 = pp === NIL ? -Infinity : lk[2 * prev * LEAF_MAX];
          if (k >= lo2) {
            hint[h] = prev;
            this.finger = prev;
            this.fingerLo = lo2;
            this.fingerHi = lo;
            return prev;
          }
        }
      }
    }
    const found = this.descend(k);
    hint[h] = found;
    return found;
  }

  /** A fresh hint table for the current leaf pool, its blocks half a leaf's mean key span. */
  private resizeHints(): Int32Array {
    const leaves = this.lused - this.lfree.length;
    const lo = this.lk[2 * this.firstLeaf() * LEAF_MAX];
    const span = ((this.last()?.end ?? lo) - lo) / leaves / 2;
    let scale = 1;
    while (scale > 2 ** -52 && span * scale >= 2) scale /= 2;
    this.hintScale = scale;
    return (this.hint = new Int32Array(2 * this.lcap).fill(NIL));
  }

  /** findLeaf by descending from the root; sets the finger. */
  private descend(k: number): number {
    const ik = this.ik;
    const ic = this.ic;
    const imeta = this.imeta;
    let node = this.root;
    let lo = -Infinity;
    let hi = Infinity;
    for (let h = this.height; h > 0; h--) {
      const b = node * INTERNAL_MAX;
      const n = imeta[node * I_META + I_COUNT];
      let l = 0;
      let r = n;
      while (l < r) {
        const mid = (l + r) >>> 1;
        if (ik[b + mid] <= k) l = mid + 1;
        else r = mid;
      }
      // l - 1 < 0 only on the leftmost path (k precedes every entry): the span starts at -Infinity.
      let i = l - 1;
      if (i < 0) i = 0;
      else lo = ik[b + i];
      if (i + 1 < n) hi = ik[b + i + 1];
      node = ic[b + i];
    }
    this.finger = node;
    this.fingerLo = lo;
    this.fingerHi = hi;
    return node;
  }

  /** Forget the finger's span (after any split or leaf removal). */
  private dropFinger(): void {
    this.fingerLo = Infinity;
    this.fingerHi = -Infinity;
  }

  /** Index (within `leaf`) of the entry with the greatest start <= k, or -1. */
  private leafFloor(leaf: number, k: number): number {
    const lk = this.lk;
    const b = 2 * leaf * LEAF_MAX;
    let l = 0;
    let r = this.lmeta[leaf * L_META + L_COUNT];
    while (l < r) {
      const mid = (l + r) >>> 1;
      if (lk[b + 2 * mid] <= k) l = mid + 1;
      else r = mid;
    }
    return l - 1;
  }

  private entryAtSlot(s: number): RangeEntry<V> {
    return { start: this.lk[2 * s], end: this.lk[2 * s + 1], value: this.lv[s] as V };
  }

  private shiftValue(v: V, delta: number): V {
    return delta === 0 ? v : this.ops.shift(v, delta);
  }

  /** Value at key k (shifted to k for extents), or undefined. O(log n). */
  get(k: number): V | undefined {
    const lk = this.lk;
    const h = this.hot;
    if (h >= 0 && k >= lk[2 * h]) {
      const st = lk[2 * h];
      if (k < lk[2 * h + 1]) {
        const hv = this.lv[h] as V;
        return st === k || this.plain ? hv : this.ops.shift(hv, k - st);
      }
      // Past the hot entry: k has no value if the entry after it starts beyond k (the next
      // sequential fault's lookup).
      const nx = this.slotAfter(h);
      if (nx < 0 || lk[2 * nx] > k) return undefined;
    }
    const leaf = this.findLeaf(k);
    const i = this.leafFloor(leaf, k);
    if (i < 0) return undefined;
    const s = leaf * LEAF_MAX + i;
    this.hot = s;
    if (lk[2 * s + 1] <= k) return undefined;
    const start = lk[2 * s];
    const v = this.lv[s] as V;
    return start === k || this.plain ? v : this.ops.shift(v, k - start);
  }

  /** The stored entry containing k (unclipped), or undefined. */
  entryAt(k: number): RangeEntry<V> | undefined {
    const leaf = this.findLeaf(k);
    const i = this.leafFloor(leaf, k);
    if (i < 0) return undefined;
    const s = leaf * LEAF_MAX + i;
    if (this.lk[2 * s + 1] <= k) return undefined;
    return this.entryAtSlot(s);
  }

  /** The stored entry with the greatest start <= k, or undefined. */
  floorEntry(k: number): RangeEntry<V> | undefined {
    const leaf = this.findLeaf(k);
    const i = this.leafFloor(leaf, k);
    return i < 0 ? undefined : this.entryAtSlot(leaf * LEAF_MAX + i);
  }

  /** The stored entry with the least start >= k, or undefined. */
  ceilEntry(k: number): RangeEntry<V> | undefined {
    let leaf = this.findLeaf(k);
    let i = this.leafFloor(leaf, k);
    if (i < 0 || this.lk[2 * (leaf * LEAF_MAX + i)] < k) i++;
    if (i >= this.lmeta[leaf * L_META + L_COUNT]) {
      leaf = this.lmeta[leaf * L_META + L_NEXT];
      i = 0;
      if (leaf === NIL) return undefined;
    }
    return this.entryAtSlot(leaf * LEAF_MAX + i);
  }

  /** Leftmost leaf. */
  private firstLeaf(): number {
    let node = this.root;
    for (let h = this.height; h > 0; h--) node = this.ic[node * INTERNAL_MAX];
    return node;
  }

  /** The first entry in key order, or undefined if the map is empty. O(log n). */
  first(): RangeEntry<V> | undefined {
    const leaf = this.firstLeaf();
    return this.lmeta[leaf * L_META + L_COUNT] === 0
      ? undefined
      : this.entryAtSlot(leaf * LEAF_MAX);
  }

  /** The last entry in key order, or undefined if the map is empty. O(log n). */
  last(): RangeEntry<V> | undefined {
    let node = this.root;
    for (let h = this.height; h > 0; h--) {
      node = this.ic[node * INTERNAL_MAX + this.imeta[node * I_META + I_COUNT] - 1];
    }
    const n = this.lmeta[node * L_META + L_COUNT];
    return n === 0 ? undefined : this.entryAtSlot(node * LEAF_MAX + n - 1);
  }

  // ---------------------------------------------------------------------------------------------
  // Range queries

  /**
   * Calls `cb` for each stored entry overlapping `[start, end)`, in key order, clipped to
   * `[start, end)`, with the value shifted to the clipped start. Returning `false` from `cb`
   * stops early. The map must not be mutated inside `cb` (throws if it is). O(log n + k).
   */
  forEachIn(start: number, end: number, cb: (s: number, e: number, v: V) => void | boolean): void {
    if (!(start < end)) return;
    const ver = this.version;
    let leaf = this.findLeaf(start);
    let i = this.leafFloor(leaf, start);
    if (i < 0 || this.lk[2 * (leaf * LEAF_MAX + i) + 1] <= start) i++;
    const lk = this.lk;
    const lv = this.lv;
    const lmeta = this.lmeta;
    while (leaf !== NIL) {
      const b = leaf * LEAF_MAX;
      for (const n = lmeta[leaf * L_META + L_COUNT]; i < n; i++) {
        const s = lk[2 * (b + i)];
        if (s >= end) return;
        const e = lk[2 * (b + i) + 1];
        const cs = s < start ? start : s;
        const r = cb(cs, e > end ? end : e, this.shiftValue(lv[b + i] as V, cs - s));
        if (this.version !== ver) throw new Error('RangeMap mutated inside forEachIn callback');
        if (r === false) return;
      }
      leaf = lmeta[leaf * L_META + L_NEXT];
      i = 0;
    }
  }

  /**
   * The number of stored entries overlapping `[start, end)`, counting at most `limit` (what
   * `forEachIn` would visit, without a callback or values). O(log n + min(k, limit)).
   */
  entriesIn(start: number, end: number, limit: number): number {
    if (!(start < end) || !(limit > 0)) return 0;
    let leaf = this.findLeaf(start);
    let i = this.leafFloor(leaf, start);
    const lk = this.lk;
    if (i < 0 || lk[2 * (leaf * LEAF_MAX + i) + 1] <= start) i++;
    const lmeta = this.lmeta;
    let n = 0;
    while (leaf !== NIL) {
      const b = leaf * LEAF_MAX;
      for (const c = lmeta[leaf * L_META + L_COUNT]; i < c; i++) {
        if (lk[2 * (b + i)] >= end) return n;
        if (++n >= limit) return n;
      }
      leaf = lmeta[leaf * L_META + L_NEXT];
      i = 0;
    }
    return n;
  }

  /** The pieces `forEachIn` would visit, as an array. */
  piecesIn(start: number, end: number): RangeEntry<V>[] {
    const out: RangeEntry<V>[] = [];
    this.forEachIn(start, end, (s, e, value) => {
      out.push({ start: s, end: e, value });
    });
    return out;
  }

  /** Maximal runs of keys without a value inside `[start, end)`, in order. */
  gapsIn(start: number, end: number): Array<{ start: number; end: number }> {
    const out: Array<{ start: number; end: number }> = [];
    if (!(start < end)) return out;
    let pos = start;
    this.forEachIn(start, end, (s, e) => {
      if (s > pos) out.push({ start: pos, end: s });
      pos = e;
    });
    if (pos < end) out.push({ start: pos, end });
    return out;
  }

  /** True iff every key in `[start, end)` has a value (true for an empty range). */
  covers(start: number, end: number): boolean {
    if (!(start < end)) return true;
    let pos = start;
    this.forEachIn(start, end, (s, e) => {
      if (s > pos) return false;
      pos = e;
      return true;
    });
    return pos >= end;
  }

  /** True iff some key in `[start, end)` has a value. O(log n). */
  anyIn(start: number, end: number): boolean {
    if (!(start < end)) return false;
    const leaf = this.findLeaf(start);
    const i = this.leafFloor(leaf, start);
    const lk = this.lk;
    const b = leaf * LEAF_MAX;
    if (i >= 0 && lk[2 * (b + i) + 1] > start) return true;
    if (i + 1 < this.lmeta[leaf * L_META + L_COUNT]) return lk[2 * (b + i + 1)] < end;
    const nx = this.lmeta[leaf * L_META + L_NEXT];
    return nx !== NIL && lk[2 * nx * LEAF_MAX] < end;
  }

  /** Number of keys in `[start, end)` that have a value. O(log n + k). */
  countIn(start: number, end: number): number {
    let total = 0;
    this.forEachIn(start, end, (s, e) => {
      total += e - s;
    });
    return total;
  }

  /** All stored entries in key order. Throws if the map is mutated during iteration. */
  *entries(): IterableIterator<RangeEntry<V>> {
    const ver = this.version;
    for (let leaf = this.firstLeaf(); leaf !== NIL; leaf = this.lmeta[leaf * L_META + L_NEXT]) {
      for (let i = 0; i < this.lmeta[leaf * L_META + L_COUNT]; i++) {
        yield this.entryAtSlot(leaf * LEAF_MAX + i);
        if (this.version !== ver) throw new Error('RangeMap mutated during entries() iteration');
      }
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Mutation

  /**
   * Assign `[start, end) := v`. Overlapped entries are truncated or split (kept tails get shifted
   * values), then the new entry coalesces with touching neighbours on both sides when
   * `ops.canMerge` allows. O(log n + k).
   */
  set(start: number, end: number, v: V): void {
    checkRange(start, end);
    if (!(start < end)) return;
    this.version++;
    this.onChange?.(start, end);
    if (this.extendHot(start, end, v)) return;
    this.setSlow(start, end, v);
  }

  /**
   * `set` for a value object the caller reuses after the call (a scratch record on a hot path):
   * the map keeps only a copy (`ops.shift(v, 0)`), made when the write does not just extend the
   * hot entry, so extending an entry in place allocates nothing. (For extent values: plainOps'
   * shift is the identity, so a plain value is kept as given.)
   */
  setTransient(start: number, end: number, v: V): void {
    checkRange(start, end);
    if (!(start < end)) return;
    this.version++;
    this.onChange?.(start, end);
    if (this.extendHot(start, end, v)) return;
    this.setSlow(start, end, this.ops.shift(v, 0));
  }

  /** The rest of `set` once the hot entry could not simply be extended. */
  private setSlow(start: number, end: number, v: V): void {
    this.hot = -1;
    let leaf = this.findLeaf(start);
    let i = this.leafFloor(leaf, start);
    // Fast path: [start, end) is currently empty (the fault handler's case).
    const lk = this.lk;
    const b = leaf * LEAF_MAX;
    let free = i < 0 || lk[2 * (b + i) + 1] <= start;
    if (free) {
      if (i + 1 < this.lmeta[leaf * L_META + L_COUNT]) {
        free = lk[2 * (b + i + 1)] >= end;
      } else {
        const nx = this.lmeta[leaf * L_META + L_NEXT];
        if (nx !== NIL) free = lk[2 * nx * LEAF_MAX] >= end;
      }
    }
    if (!free) {
      this.deleteRange(start, end);
      leaf = this.findLeaf(start);
      i = this.leafFloor(leaf, start);
    }
    this.placeFree(leaf, i, start, end, v);
  }

  /**
   * The fast path of `set`: when the hot entry ends at `start`, `[start, end)` is empty and the
   * entry after it neither overlaps nor touches it, and v continues the hot entry, extend that
   * entry in place (no key of any leaf's first entry changes, so no separator does). Returns
   * whether it did.
   */
  private extendHot(start: number, end: number, v: V): boolean {
    const h = this.hot;
    if (h < 0) return false;
    const lk = this.lk;
    if (lk[2 * h + 1] !== start) return false;
    const next = this.slotAfter(h);
    // The next entry must start past `end` (at `end` it might coalesce too: the slow path).
    if (next >= 0 && lk[2 * next] <= end) return false;
    if (!this.ops.canMerge(this.lv[h] as V, start - lk[2 * h], v)) return false;
    lk[2 * h + 1] = end;
    this.covered += end - start;
    return true;
  }

  /**
   * For a caller that decides merging itself (ExtentMap's sequential writes, without a call
   * through `ops`): the start key of the hot entry when it ends exactly at `start` and the entry
   * after it starts beyond `end` — `extendHot`'s conditions but the merge — else -1. Then
   * `hotValue()` is the entry's value, and `extendHotTo(start, end)` is what `set(start, end, v)`
   * does for a v that `ops.canMerge(hotValue(), start - hotStart, v)` accepts.
   */
  hotRunEndingAt(start: number, end: number): number {
    const h = this.hot;
    if (h < 0) return -1;
    const lk = this.lk;
    if (lk[2 * h + 1] !== start) return -1;
    const next = this.slotAfter(h);
    if (next >= 0 && lk[2 * next] <= end) return -1;
    return lk[2 * h]!;
  }

  /** The hot entry's value (only after `hotRunEndingAt` returned a key). */
  hotValue(): V {
    return this.lv[this.hot] as V;
  }

  /**
   * `set(start, end, v)` for a v that continues the hot entry, which `hotRunEndingAt(start, end)`
   * just accepted (no other call in between): the entry grows to `end` in place.
   */
  extendHotTo(start: number, end: number): void {
    checkRange(start, end);
    this.version++;
    this.onChange?.(start, end);
    this.lk[2 * this.hot + 1] = end;
    this.covered += end - start;
  }

  /** The slot of the entry after the one in slot s (the next leaf's first), or -1. */
  private slotAfter(s: number): number {
    const leaf = Math.floor(s / LEAF_MAX);
    if (s - leaf * LEAF_MAX + 1 < this.lmeta[leaf * L_META + L_COUNT]) return s + 1;
    const nl = this.lmeta[leaf * L_META + L_NEXT];
    return nl === NIL ? -1 : nl * LEAF_MAX;
  }

  /**
   * Store `[start, end) -> v` where that range is known to be empty; (leaf, i) is the floor entry
   * of `start` (i = -1: none, then leaf is the leftmost leaf). Coalesces with both neighbours.
   */
  private placeFree(leaf: number, i: number, start: number, end: number, v: V): void {
    const ops = this.ops;
    const lk = this.lk;
    const lv = this.lv;
    this.covered += end - start;
    const sl = leaf * LEAF_MAX + i; // slot of the left neighbour (if i >= 0)
    let mergedLeft = false;
    if (i >= 0 && lk[2 * sl + 1] === start && ops.canMerge(lv[sl] as V, start - lk[2 * sl], v)) {
      lk[2 * sl + 1] = end;
      mergedLeft = true;
      this.hot = sl;
    }
    // Right neighbour: the entry after the floor entry, possibly the first of the next leaf.
    let rl = leaf;
    let ri = i + 1;
    if (ri >= this.lmeta[leaf * L_META + L_COUNT]) {
      rl = this.lmeta[leaf * L_META + L_NEXT];
      ri = 0;
    }
    if (rl !== NIL) {
      const sr = rl * LEAF_MAX + ri;
      if (lk[2 * sr] === end) {
        if (mergedLeft) {
          if (ops.canMerge(lv[sl] as V, end - lk[2 * sl], lv[sr] as V)) {
            lk[2 * sl + 1] = lk[2 * sr + 1];
            this.count--;
            this.hot = -1;
            this.removeAt(rl, ri);
            return;
          }
        } else if (ops.canMerge(v, end - start, lv[sr] as V)) {
          // The merged entry starts at `start` and its value there is v.
          lk[2 * sr] = start;
          lv[sr] = v;
          if (ri === 0) this.propagateLeafFirstKey(rl, start);
          return;
        }
      }
    }
    if (mergedLeft) return;
    this.count++;
    this.insertAt(leaf, i + 1, start, end, v);
  }

  /** Remove `[start, end)`, truncating or splitting overlapped entries. O(log n + k). */
  delete(start: number, end: number): void {
    checkRange(start, end);
    if (!(start < end)) return;
    this.hot = -1;
    this.version++;
    this.onChange?.(start, end);
    this.deleteRange(start, end);
  }

  private deleteRange(start: number, end: number): void {
    let leaf = this.findLeaf(start);
    let i = this.leafFloor(leaf, start);
    if (i < 0) {
      i = 0;
    } else {
      const lk = this.lk;
      const s = leaf * LEAF_MAX + i;
      const e0 = lk[2 * s + 1];
      if (e0 <= start) {
        i++;
      } else {
        const s0 = lk[2 * s];
        if (s0 < start) {
          if (e0 > end) {
            // [start, end) is strictly inside one entry: split it in two.
            lk[2 * s + 1] = start;
            this.covered -= end - start;
            this.count++;
            this.insertAt(leaf, i + 1, end, e0, this.ops.shift(this.lv[s] as V, end - s0));
            return;
          }
          lk[2 * s + 1] = start;
          this.covered -= e0 - start;
          i++;
        }
        // s0 === start: the loop below handles the entry.
      }
    }
    // From (leaf, i) on, every entry starts at or after `start`. No allocation happens in this
    // loop, so the slab references stay valid.
    const lk = this.lk;
    const lv = this.lv;
    const lmeta = this.lmeta;
    const first = leaf;
    for (;;) {
      const b = leaf * LEAF_MAX;
      const n = lmeta[leaf * L_META + L_COUNT];
      let j = i;
      while (j < n && lk[2 * (b + j) + 1] <= end) {
        this.covered -= lk[2 * (b + j) + 1] - lk[2 * (b + j)];
        j++;
      }
      const partial = j < n && lk[2 * (b + j)] < end;
      const next = lmeta[leaf * L_META + L_NEXT];
      if (j > i) {
        this.count -= j - i;
        if (i === 0 && j === n) {
          // Whole leaf covered (so nothing partial in it): drop it and go on (i is already 0).
          this.removeLeaf(leaf);
          if (next === NIL) break;
          leaf = next;
          continue;
        }
        this.removeSlots(leaf, i, j);
      }
      if (partial) {
        // The entry now at i reaches past `end`: keep its tail [end, e).
        const s = b + i;
        const s0 = lk[2 * s];
        lk[2 * s] = end;
        lv[s] = this.ops.shift(lv[s] as V, end - s0);
        this.covered -= end - s0;
      }
      if (i === 0 && (j > i || partial)) this.propagateLeafFirstKey(leaf, lk[2 * b]);
      if (j < n || next === NIL) break;
      leaf = next;
      i = 0;
    }
    // Removed leaves have count 0, so these are no-ops for them.
    this.maybeMergeLeaf(first);
    if (leaf !== first) this.maybeMergeLeaf(leaf);
  }

  /** Remove all entries (and shrink the pools). */
  clear(): void {
    this.hot = -1;
    this.version++;
    this.onChange?.(0, MAX_KEY);
    this.reset();
  }

  /** A new empty map with the same value operations. */
  emptyLike(): RangeMap<V> {
    return new RangeMap<V>(this.ops);
  }

  /** An independent copy (values shared by reference; they are immutable). O(pool size). */
  clone(): RangeMap<V> {
    const m = new RangeMap<V>(this.ops);
    m.lk = this.lk.slice();
    m.lv = this.lv.slice();
    m.lmeta = this.lmeta.slice();
    m.lcap = this.lcap;
    m.lused = this.lused;
    m.lfree = this.lfree.slice();
    m.ik = this.ik.slice();
    m.ic = this.ic.slice();
    m.imeta = this.imeta.slice();
    m.icap = this.icap;
    m.iused = this.iused;
    m.ifree = this.ifree.slice();
    m.root = this.root;
    m.height = this.height;
    m.count = this.count;
    m.covered = this.covered;
    m.dropFinger();
    return m;
  }

  // ---------------------------------------------------------------------------------------------
  // Tree maintenance

  private parentOf(node: number, level: number): number {
    return level === 0
      ? this.lmeta[node * L_META + L_PARENT]
      : this.imeta[node * I_META + I_PARENT];
  }

  private setParent(node: number, level: number, p: number): void {
    if (level === 0) this.lmeta[node * L_META + L_PARENT] = p;
    else this.imeta[node * I_META + I_PARENT] = p;
  }

  private firstKey(node: number, level: number): number {
    return level === 0 ? this.lk[2 * node * LEAF_MAX] : this.ik[node * INTERNAL_MAX];
  }

  /** Position of `child` among the children of internal node `p`. */
  private childIndex(p: number, child: number): number {
    const ic = this.ic;
    const b = p * INTERNAL_MAX;
    const n = this.imeta[p * I_META + I_COUNT];
    for (let i = 0; i < n; i++) if (ic[b + i] === child) return i;
    throw new Error('RangeMap: internal error (child not found in parent)');
  }

  /** The first start of `leaf` became `key`: update the finger span and the ancestors' keys. */
  private propagateLeafFirstKey(leaf: number, key: number): void {
    if (this.fingerLo < this.fingerHi) {
      // The finger is valid: keep its span exact.
      if (leaf === this.finger) {
        if (this.fingerLo !== -Infinity) this.fingerLo = key; // -Infinity: leftmost leaf
      } else if (leaf === this.lmeta[this.finger * L_META + L_NEXT]) {
        this.fingerHi = key;
      }
    }
    this.propagateUp(this.lmeta[leaf * L_META + L_PARENT], leaf, key);
  }

  /** `child` of `p` has the new smallest start `key`: rewrite it where ancestors record it. */
  private propagateUp(p: number, child: number, key: number): void {
    const imeta = this.imeta;
    while (p !== NIL) {
      const ci = this.childIndex(p, child);
      this.ik[p * INTERNAL_MAX + ci] = key;
      if (ci !== 0) return;
      child = p;
      p = imeta[p * I_META + I_PARENT];
    }
  }

  /** Write entry (s, e, v) at index idx of a non-full leaf holding n entries. */
  private insertSlot(leaf: number, idx: number, n: number, s: number, e: number, v: V): void {
    const lk = this.lk;
    const lv = this.lv;
    const b = leaf * LEAF_MAX;
    for (let j = b + n; j > b + idx; j--) {
      lk[2 * j] = lk[2 * j - 2];
      lk[2 * j + 1] = lk[2 * j - 1];
      lv[j] = lv[j - 1];
    }
    lk[2 * (b + idx)] = s;
    lk[2 * (b + idx) + 1] = e;
    lv[b + idx] = v;
    this.lmeta[leaf * L_META + L_COUNT] = n + 1;
  }

  /** Remove entries [i, j) of a leaf (shifting the rest down, clearing vacated value slots). */
  private removeSlots(leaf: number, i: number, j: number): void {
    const lk = this.lk;
    const lv = this.lv;
    const b = leaf * LEAF_MAX;
    const n = this.lmeta[leaf * L_META + L_COUNT];
    const d = j - i;
    for (let t = b + j; t < b + n; t++) {
      lk[2 * (t - d)] = lk[2 * t];
      lk[2 * (t - d) + 1] = lk[2 * t + 1];
      lv[t - d] = lv[t];
    }
    for (let t = b + n - d; t < b + n; t++) lv[t] = undefined;
    this.lmeta[leaf * L_META + L_COUNT] = n - d;
  }

  /** Insert entry at index idx of leaf (its position in key order), splitting if full. */
  private insertAt(leaf: number, idx: number, s: number, e: number, v: V): void {
    const n = this.lmeta[leaf * L_META + L_COUNT];
    if (n < LEAF_MAX) {
      this.insertSlot(leaf, idx, n, s, e, v);
      if (idx === 0) this.propagateLeafFirstKey(leaf, s);
      return;
    }
    // Full: move entries [mid, n) to a new right sibling.
    this.dropFinger();
    let mode: SplitMode = SPLIT_HALF;
    let mid = n >>> 1;
    if (idx === n && this.lmeta[leaf * L_META + L_NEXT] === NIL) {
      mode = SPLIT_APPEND; // keep the old leaf full; the new one starts with just this entry
      mid = n;
    } else if (idx === 0 && this.lmeta[leaf * L_META + L_PREV] === NIL) {
      mode = SPLIT_PREPEND; // everything moves right; the old leaf keeps just this entry
      mid = 0;
    }
    const right = this.allocLeaf(); // may reallocate the slabs: read them only now
    const lk = this.lk;
    const lv = this.lv;
    const lmeta = this.lmeta;
    if (mid < n) {
      const from = leaf * LEAF_MAX + mid;
      const to = right * LEAF_MAX;
      lk.copyWithin(2 * to, 2 * from, 2 * (leaf * LEAF_MAX + n));
      for (let j = 0; j < n - mid; j++) {
        lv[to + j] = lv[from + j];
        lv[from + j] = undefined;
      }
      lmeta[leaf * L_META + L_COUNT] = mid;
      lmeta[right * L_META + L_COUNT] = n - mid;
    }
    if (mid === n || idx > mid) this.insertSlot(right, idx - mid, n - mid, s, e, v);
    else this.insertSlot(leaf, idx, mid, s, e, v);
    const next = lmeta[leaf * L_META + L_NEXT];
    lmeta[right * L_META + L_PREV] = leaf;
    lmeta[right * L_META + L_NEXT] = next;
    if (next !== NIL) lmeta[next * L_META + L_PREV] = right;
    lmeta[leaf * L_META + L_NEXT] = right;
    this.insertChild(leaf, right, lk[2 * right * LEAF_MAX], mode, 0);
    if (idx === 0) this.propagateLeafFirstKey(leaf, s);
  }

  /**
   * Insert node `right` (smallest start `key`) into the tree just after its sibling `left`; both
   * are at `level` (0 = leaves). Splits full ancestors, growing a new root if needed.
   */
  private insertChild(
    left: number,
    right: number,
    key: number,
    mode: SplitMode,
    level: number,
  ): void {
    const p = this.parentOf(left, level);
    if (p === NIL) {
      const r = this.allocInternal();
      const b = r * INTERNAL_MAX;
      this.ik[b] = this.firstKey(left, level);
      this.ik[b + 1] = key;
      this.ic[b] = left;
      this.ic[b + 1] = right;
      this.imeta[r * I_META + I_COUNT] = 2;
      this.setParent(left, level, r);
      this.setParent(right, level, r);
      this.root = r;
      this.height++;
      return;
    }
    const ci = this.childIndex(p, left) + 1;
    const n = this.imeta[p * I_META + I_COUNT];
    if (n < INTERNAL_MAX) {
      this.insertChildSlot(p, ci, key, right);
      this.setParent(right, level, p);
      return;
    }
    let mid = n >>> 1;
    if (mode === SPLIT_APPEND && ci === n) mid = n;
    else if (mode === SPLIT_PREPEND && ci === 1) mid = 1;
    const sib = this.allocInternal(); // may reallocate the internal slabs: read them only now
    const ik = this.ik;
    const ic = this.ic;
    const pb = p * INTERNAL_MAX;
    const sb = sib * INTERNAL_MAX;
    for (let j = mid; j < n; j++) {
      ik[sb + j - mid] = ik[pb + j];
      ic[sb + j - mid] = ic[pb + j];
      this.setParent(ic[pb + j], level, sib);
    }
    this.imeta[p * I_META + I_COUNT] = mid;
    this.imeta[sib * I_META + I_COUNT] = n - mid;
    if (mid === n || ci > mid) {
      this.insertChildSlot(sib, ci - mid, key, right);
      this.setParent(right, level, sib);
    } else {
      this.insertChildSlot(p, ci, key, right);
      this.setParent(right, level, p);
    }
    this.insertChild(p, sib, ik[sb], mode, level + 1);
  }

  /** Insert (key, child) at index ci of a non-full internal node. */
  private insertChildSlot(p: number, ci: number, key: number, child: number): void {
    const ik = this.ik;
    const ic = this.ic;
    const b = p * INTERNAL_MAX;
    const n = this.imeta[p * I_META + I_COUNT];
    for (let j = b + n; j > b + ci; j--) {
      ik[j] = ik[j - 1];
      ic[j] = ic[j - 1];
    }
    ik[b + ci] = key;
    ic[b + ci] = child;
    this.imeta[p * I_META + I_COUNT] = n + 1;
  }

  /** Remove the single entry i of a leaf. Caller adjusts count/covered. */
  private removeAt(leaf: number, i: number): void {
    if (this.lmeta[leaf * L_META + L_COUNT] === 1) {
      this.removeLeaf(leaf);
      return;
    }
    this.removeSlots(leaf, i, i + 1);
    if (i === 0) this.propagateLeafFirstKey(leaf, this.lk[2 * leaf * LEAF_MAX]);
    this.maybeMergeLeaf(leaf);
  }

  /** Unlink and free a leaf (its entries are discarded; caller adjusts count/covered). */
  private removeLeaf(leaf: number): void {
    this.dropFinger();
    const lmeta = this.lmeta;
    const b = leaf * L_META;
    const p = lmeta[b + L_PARENT];
    if (p === NIL) {
      // The root leaf simply becomes empty.
      this.removeSlots(leaf, 0, lmeta[b + L_COUNT]);
      return;
    }
    const prev = lmeta[b + L_PREV];
    const next = lmeta[b + L_NEXT];
    if (prev !== NIL) lmeta[prev * L_META + L_NEXT] = next;
    if (next !== NIL) lmeta[next * L_META + L_PREV] = prev;
    this.removeChild(p, leaf, 0);
    this.freeLeaf(leaf);
    // Collapse single-child roots.
    while (this.height > 0) {
      const r = this.root;
      if (this.imeta[r * I_META + I_COUNT] !== 1) break;
      const c = this.ic[r * INTERNAL_MAX];
      this.freeInternal(r);
      this.root = c;
      this.height--;
      this.setParent(c, this.height, NIL);
    }
  }

  /** Remove `child` (at `level`) from internal node `p`, freeing `p` in turn if it empties. */
  private removeChild(p: number, child: number, level: number): void {
    const imeta = this.imeta;
    const n = imeta[p * I_META + I_COUNT];
    if (n === 1) {
      const gp = imeta[p * I_META + I_PARENT];
      // The root always has >= 2 children, so an only child never hangs off the root.
      if (gp === NIL) throw new Error('RangeMap: internal error (single-child root)');
      this.removeChild(gp, p, level + 1);
      this.freeInternal(p);
      return;
    }
    const ci = this.childIndex(p, child);
    const ik = this.ik;
    const ic = this.ic;
    const b = p * INTERNAL_MAX;
    for (let j = b + ci + 1; j < b + n; j++) {
      ik[j - 1] = ik[j];
      ic[j - 1] = ic[j];
    }
    imeta[p * I_META + I_COUNT] = n - 1;
    if (ci === 0) this.propagateUp(imeta[p * I_META + I_PARENT], p, ik[b]);
  }

  /** If `leaf` (still in the tree) is underfull, merge it with a sibling under the same parent. */
  private maybeMergeLeaf(leaf: number): void {
    const lmeta = this.lmeta;
    const n = lmeta[leaf * L_META + L_COUNT];
    if (n === 0 || n >= LEAF_UNDERFULL) return;
    const p = lmeta[leaf * L_META + L_PARENT];
    if (p === NIL) return;
    const prev = lmeta[leaf * L_META + L_PREV];
    if (
      prev !== NIL &&
      lmeta[prev * L_META + L_PARENT] === p &&
      lmeta[prev * L_META + L_COUNT] + n <= LEAF_MERGE_MAX
    ) {
      this.absorb(prev, leaf);
      return;
    }
    const next = lmeta[leaf * L_META + L_NEXT];
    if (
      next !== NIL &&
      lmeta[next * L_META + L_PARENT] === p &&
      lmeta[next * L_META + L_COUNT] + n <= LEAF_MERGE_MAX
    ) {
      this.absorb(leaf, next);
    }
  }

  /** Append all entries of `right` (the next leaf, same parent) to `left` and free `right`. */
  private absorb(left: number, right: number): void {
    const lk = this.lk;
    const lv = this.lv;
    const lmeta = this.lmeta;
    const nl = lmeta[left * L_META + L_COUNT];
    const nr = lmeta[right * L_META + L_COUNT];
    const to = left * LEAF_MAX + nl;
    const from = right * LEAF_MAX;
    lk.copyWithin(2 * to, 2 * from, 2 * (from + nr));
    for (let j = 0; j < nr; j++) lv[to + j] = lv[from + j];
    lmeta[left * L_META + L_COUNT] = nl + nr;
    lmeta[right * L_META + L_COUNT] = 0;
    this.removeLeaf(right);
  }

  // ---------------------------------------------------------------------------------------------
  // Diagnostics

  /** Shape of the tree (for benchmarks and tests). */
  treeStats(): { height: number; leaves: number; internals: number; leafCapacity: number } {
    return {
      height: this.height,
      leaves: this.lused - this.lfree.length,
      internals: this.iused - this.ifree.length,
      leafCapacity: this.lcap,
    };
  }

  /**
   * Verify every structural invariant listed in the module comment (including maximal
   * coalescing and pool bookkeeping); throws an Error describing the first violation. O(pool
   * size); for tests.
   */
  checkInvariants(): void {
    const fail = (msg: string): never => {
      throw new Error(`RangeMap invariant violated: ${msg}`);
    };
    const { lk, lv, lmeta, ik, ic, imeta } = this;
    if (lk.length !== this.lcap * 2 * LEAF_MAX || lmeta.length !== this.lcap * L_META)
      fail('leaf slab size');
    if (lv.length !== this.lused * LEAF_MAX) fail('value slab size');
    if (ik.length !== this.icap * INTERNAL_MAX || imeta.length !== this.icap * I_META)
      fail('internal slab size');
    if (this.parentOf(this.root, this.height) !== NIL) fail('root has a parent');
    let count = 0;
    let covered = 0;
    let prevLeaf = NIL;
    let prevEnd = -1;
    let prevStart = -1;
    let prevValue: V | undefined;
    const seenLeaves = new Set<number>();
    const seenInternals = new Set<number>();
    const walk = (node: number, depth: number): void => {
      if (depth === this.height) {
        const leaf = node;
        if (seenLeaves.has(leaf)) fail(`leaf ${leaf} reachable twice`);
        seenLeaves.add(leaf);
        const n = lmeta[leaf * L_META + L_COUNT];
        if (n === 0 && leaf !== this.root) fail('empty non-root leaf');
        if (n > LEAF_MAX) fail('leaf overfull');
        if (lmeta[leaf * L_META + L_PREV] !== prevLeaf) fail('leaf prev link');
        if (prevLeaf !== NIL && lmeta[prevLeaf * L_META + L_NEXT] !== leaf) fail('leaf next link');
        for (let j = 0; j < LEAF_MAX; j++) {
          const s = leaf * LEAF_MAX + j;
          if (j >= n) {
            if (lv[s] !== undefined) fail(`stale value in leaf ${leaf} slot ${j}`);
            continue;
          }
          const st = lk[2 * s];
          const en = lk[2 * s + 1];
          if (!(Number.isInteger(st) && Number.isInteger(en) && st >= 0 && en <= MAX_KEY)) {
            fail(`bad keys [${st}, ${en})`);
          }
          if (!(st < en)) fail(`empty entry [${st}, ${en})`);
          if (st < prevEnd) fail(`overlap/unsorted at ${st} (previous end ${prevEnd})`);
          if (
            st === prevEnd &&
            this.ops.canMerge(prevValue as V, prevEnd - prevStart, lv[s] as V)
          ) {
            fail(`mergeable neighbours meet at ${st}`);
          }
          count++;
          covered += en - st;
          prevStart = st;
          prevEnd = en;
          prevValue = lv[s];
        }
        prevLeaf = leaf;
        return;
      }
      if (seenInternals.has(node)) fail(`internal ${node} reachable twice`);
      seenInternals.add(node);
      const n = imeta[node * I_META + I_COUNT];
      if (n === 0) fail('empty internal node');
      if (n === 1 && node === this.root) fail('single-child internal root');
      if (n > INTERNAL_MAX) fail('internal node overfull');
      for (let i = 0; i < n; i++) {
        const c = ic[node * INTERNAL_MAX + i];
        const level = this.height - depth - 1;
        if (this.parentOf(c, level) !== node) fail('bad parent link');
        walk(c, depth + 1);
        const fk = this.firstKey(c, level);
        if (ik[node * INTERNAL_MAX + i] !== fk)
          fail(`separator ${ik[node * INTERNAL_MAX + i]} != first key ${fk}`);
      }
    };
    walk(this.root, 0);
    if (prevLeaf !== NIL && lmeta[prevLeaf * L_META + L_NEXT] !== NIL) fail('last leaf has next');
    if (count !== this.count) fail(`size ${this.count} != ${count}`);
    if (covered !== this.covered) fail(`totalCovered ${this.covered} != ${covered}`);
    // Pool bookkeeping: every id below the high-water mark is either reachable or free, once.
    const lf = new Set(this.lfree);
    if (lf.size !== this.lfree.length || seenLeaves.size + lf.size !== this.lused)
      fail('leaf pool leak');
    for (const id of lf) {
      if (seenLeaves.has(id) || id >= this.lused) fail(`bad free leaf ${id}`);
      for (let j = 0; j < LEAF_MAX; j++)
        if (lv[id * LEAF_MAX + j] !== undefined) fail('value kept by free leaf');
    }
    const inf = new Set(this.ifree);
    if (inf.size !== this.ifree.length || seenInternals.size + inf.size !== this.iused)
      fail('internal pool leak');
    for (const id of inf)
      if (seenInternals.has(id) || id >= this.iused) fail(`bad free internal ${id}`);
  }
}
