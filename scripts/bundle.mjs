#!/usr/bin/env node
/**
 * Build step after tsc (`npm run build`): `gmemlab measure snp` and `measure tdx` as one script
 * each, dist/src/cli/measure_{snp,tdx}.bundle.js, made of the very modules tsc emitted for them,
 * with V8's code cache of a run of it (measure_{snp,tdx}.bundle.cache).
 *
 * Why: a measurement is one short command whose time is mostly Node's start and loading its code
 * (issues 11 and 12: `measure` under 0.2 s end to end). Node's ESM loader spends about half a
 * millisecond per module (resolve, stat, read, compile, link) on the ~80 modules of each, and a
 * cold run parses and compiles every function it calls. main.ts runs a bundle when it is at least
 * as new as tsc's last build (dist/.tsbuildinfo), else the modules, so a bare `tsc` never runs
 * stale code; and it hands V8 the cache when the cache names the bundle's SHA-256 (the bundle's
 * first line); V8 itself refuses a cache of another V8 version or other flags.
 *
 * How, without a bundler dependency (the TypeScript parser of the typescript devDependency reads
 * tsc's output): every module of an entry's static import graph (relative specifiers; `node:`
 * built-ins come through the `require` the script is called with) becomes a function run once,
 * in ESM evaluation order (depth-first, imports in source order, a module after its imports): its
 * import declarations turn into constants read from its dependencies' export objects (frozen,
 * null prototype, keys sorted: as namespace objects), `export` modifiers are dropped, and it
 * returns its exports. The module text is otherwise what tsc emitted (same names, same messages;
 * characters outside ASCII escaped). That is exact for ESM semantics when every import is fully
 * evaluated before its importer reads it, and an exported binding never changes after its module
 * ran, so the script refuses what would break that: an import circle, an exported `let`/`var`,
 * `export default`, dynamic `import()` or `import.meta` (relative to another file), and package
 * imports. Then it runs each bundle once on a fixture of the tests and checks that it prints what
 * the modules print (measure.ts's measureMain) before writing the cache of that run. Any failure
 * leaves no bundle and fails the build.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Script } from 'node:vm';
import ts from 'typescript';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const DIST = join(ROOT, 'dist');
const ENTRIES = ['src/cli/measure_snp.js', 'src/cli/measure_tdx.js'];
/** A bundle's first line: this, then the SHA-256 (hex) of the rest, which its code cache repeats. */
const BUNDLE_TAG = '// gmemlab bundle sha256:';
const require = createRequire(import.meta.url);

class BundleError extends Error {}

const hasModifier = (node, kind) =>
  ts.canHaveModifiers(node) && (ts.getModifiers(node) ?? []).some((m) => m.kind === kind);

/** Parsed modules by file (the entries share most of theirs). */
const parsed = new Map();

/** One parsed module: its text, dependencies and exports. */
function parseModule(file) {
  let m = parsed.get(file);
  if (m === undefined) parsed.set(file, (m = parseModuleText(file)));
  return m;
}

function parseModuleText(file) {
  const text = readFileSync(file, 'utf8');
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, true, ts.ScriptKind.JS);
  const where = (node) =>
    `${relative(DIST, file)}:${sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1}`;
  /** Relative dependencies in source order (imports and re-exports). */
  const deps = [];
  /** [start, end, replacement] on `text`. */
  const edits = [];
  /** Statements replacing import declarations: { dep | builtin, bindings }. */
  const imports = [];
  /** exported name -> expression (local name, or `dep.name`). */
  const exports = new Map();
  /** `export * from` dependencies. */
  const stars = [];
  /** Top-level declarations: name -> 'const' | 'let' | 'var' | 'function' | 'class'. */
  const decls = new Map();
  const spec = (node) => {
    const s = node.moduleSpecifier.text;
    if (s.startsWith('./') || s.startsWith('../')) {
      const dep = resolve(dirname(file), s);
      deps.push(dep);
      return { dep };
    }
    if (s.startsWith('node:')) return { builtin: s };
    throw new BundleError(`${where(node)}: import of the package '${s}' (only node: built-ins)`);
  };
  const declare = (list, kind) => {
    for (const d of list.declarations) {
      if (!ts.isIdentifier(d.name))
        throw new BundleError(`${where(d)}: destructuring at top level`);
      decls.set(d.name.text, kind);
    }
  };
  const stripExport = (node) => {
    const m = ts.getModifiers(node).find((x) => x.kind === ts.SyntaxKind.ExportKeyword);
    edits.push([m.getStart(sf), m.getEnd() + 1, '']);
  };
  for (const st of sf.statements) {
    if (ts.isImportDeclaration(st)) {
      const from = spec(st);
      const c = st.importClause;
      const bindings = [];
      if (c !== undefined && !c.isTypeOnly) {
        if (c.name !== undefined) bindings.push(['default', c.name.text]);
        const nb = c.namedBindings;
        if (nb !== undefined && ts.isNamespaceImport(nb)) bindings.push(['*', nb.name.text]);
        else if (nb !== undefined)
          for (const e of nb.elements)
            if (!e.isTypeOnly) bindings.push([(e.propertyName ?? e.name).text, e.name.text]);
      }
      imports.push({ ...from, bindings });
      edits.push([st.getFullStart(), st.getEnd(), '']);
    } else if (ts.isExportDeclaration(st)) {
      if (st.isTypeOnly) {
        edits.push([st.getFullStart(), st.getEnd(), '']);
        continue;
      }
      const from = st.moduleSpecifier !== undefined ? spec(st) : undefined;
      if (from?.builtin !== undefined)
        throw new BundleError(`${where(st)}: re-export from ${from.builtin}`);
      const ec = st.exportClause;
      if (ec === undefined) stars.push(from.dep);
      else if (ts.isNamespaceExport(ec)) throw new BundleError(`${where(st)}: export * as`);
      else
        for (const e of ec.elements) {
          if (e.isTypeOnly) continue;
          const local = (e.propertyName ?? e.name).text;
          exports.set(e.name.text, from !== undefined ? { dep: from.dep, name: local } : { local });
        }
      edits.push([st.getFullStart(), st.getEnd(), '']);
    } else if (ts.isExportAssignment(st)) {
      throw new BundleError(`${where(st)}: export default`);
    } else {
      const exported = hasModifier(st, ts.SyntaxKind.ExportKeyword);
      if (hasModifier(st, ts.SyntaxKind.DefaultKeyword))
        throw new BundleError(`${where(st)}: export default`);
      if (ts.isVariableStatement(st)) {
        const f = st.declarationList.flags;
        const kind = f & ts.NodeFlags.Const ? 'const' : f & ts.NodeFlags.Let ? 'let' : 'var';
        declare(st.declarationList, kind);
        if (exported) {
          for (const d of st.declarationList.declarations)
            exports.set(d.name.text, { local: d.name.text });
          stripExport(st);
        }
      } else if (
        (ts.isFunctionDeclaration(st) || ts.isClassDeclaration(st)) &&
        st.name !== undefined
      ) {
        decls.set(st.name.text, ts.isFunctionDeclaration(st) ? 'function' : 'class');
        if (exported) {
          exports.set(st.name.text, { local: st.name.text });
          stripExport(st);
        }
      } else if (exported) throw new BundleError(`${where(st)}: unexpected export`);
    }
  }
  // Dynamic import() and import.meta resolve against the module's own URL, not the bundle's.
  const visit = (node) => {
    if (node.kind === ts.SyntaxKind.ImportKeyword && ts.isCallExpression(node.parent))
      throw new BundleError(`${where(node)}: dynamic import()`);
    if (ts.isMetaProperty(node) && node.keywordToken === ts.SyntaxKind.ImportKeyword)
      throw new BundleError(`${where(node)}: import.meta`);
    ts.forEachChild(node, visit);
  };
  visit(sf);
  // `export { x }` of an imported x re-exports the dependency's binding.
  for (const im of imports)
    for (const [n, local] of im.bindings)
      for (const [name, e] of exports)
        if (e.local === local && im.dep !== undefined && n !== '*' && n !== 'default')
          exports.set(name, { dep: im.dep, name: n });
  for (const [name, e] of exports)
    if (e.local !== undefined && !['const', 'function', 'class'].includes(decls.get(e.local)))
      throw new BundleError(
        `${relative(DIST, file)}: export ${name} is ${decls.get(e.local) ?? 'not a top-level declaration'} (only const, function, class)`,
      );
  edits.sort((a, b) => b[0] - a[0]);
  let body = text;
  for (const [s, e, r] of edits) body = body.slice(0, s) + r + body.slice(e);
  body = body.replace(/^\/\/# sourceMappingURL=.*$/m, '').trim();
  return { deps, imports, exports, stars, body };
}

/** The bundle of `entry` (a path under dist/). */
export function bundle(entry) {
  const order = [];
  const mods = new Map();
  const state = new Map(); // file -> 'visiting' | 'done'
  const visit = (file, from) => {
    const s = state.get(file);
    if (s === 'done') return;
    if (s === 'visiting')
      throw new BundleError(`import circle: ${relative(DIST, from)} -> ${relative(DIST, file)}`);
    state.set(file, 'visiting');
    const m = parseModule(file);
    mods.set(file, m);
    for (const d of m.deps) visit(d, file);
    state.set(file, 'done');
    order.push(file);
  };
  const entryFile = join(DIST, entry);
  visit(entryFile, entryFile);
  const id = new Map(order.map((f, i) => [f, `__m${i}`]));
  const builtins = new Map();
  for (const m of mods.values())
    for (const im of m.imports)
      if (im.builtin !== undefined && !builtins.has(im.builtin))
        builtins.set(im.builtin, `__${im.builtin.replace(/\W/g, '_')}`);
  /** The export names of a module, stars included (ESM: `default` never comes through a star). */
  const names = (file) => {
    const m = mods.get(file);
    const out = new Set(m.exports.keys());
    for (const s of m.stars) for (const n of names(s)) if (n !== 'default') out.add(n);
    return out;
  };
  const out = [
    `// Generated by scripts/bundle.mjs from ${order.length} modules of dist/ (${entry}): do not edit.`,
    '(function (__require) {',
    "'use strict';",
  ];
  for (const [b, v] of builtins) out.push(`const ${v} = __require('${b}');`);
  for (const f of order) {
    const m = mods.get(f);
    const lines = [`// ${relative(DIST, f)}`, `const ${id.get(f)} = (() => {`];
    for (const im of m.imports) {
      const src = im.builtin !== undefined ? builtins.get(im.builtin) : id.get(im.dep);
      if (im.dep !== undefined) {
        const have = names(im.dep);
        for (const [n] of im.bindings)
          if (n !== '*' && !have.has(n))
            throw new BundleError(
              `${relative(DIST, f)}: ${relative(DIST, im.dep)} has no export ${n}`,
            );
      }
      const named = im.bindings.filter(([n]) => n !== '*');
      for (const [n, local] of im.bindings) if (n === '*') lines.push(`const ${local} = ${src};`);
      if (named.length > 0)
        lines.push(
          `const { ${named.map(([n, l]) => (n === l ? n : `${n}: ${l}`)).join(', ')} } = ${src};`,
        );
    }
    lines.push(m.body);
    // The exports object stands for the module namespace: null prototype, frozen, keys in code
    // unit order (as a namespace object lists them).
    const props = [];
    for (const s of m.stars) props.push(`...${id.get(s)}`);
    for (const [n, e] of [...m.exports].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      props.push(
        e.local !== undefined
          ? n === e.local
            ? n
            : `${n}: ${e.local}`
          : `${n}: ${id.get(e.dep)}.${e.name}`,
      );
    const obj = `{ __proto__: null, ${props.join(', ')} }`;
    lines.push(
      m.stars.length === 0
        ? `return Object.freeze(${obj});`
        : `const __e = ${obj};\nreturn Object.freeze(Object.setPrototypeOf(Object.fromEntries(Object.keys(__e).sort().map((k) => [k, __e[k]])), null));`,
      '})();',
    );
    out.push(lines.join('\n'));
  }
  out.push(`return ${id.get(entryFile)};`, '})', '');
  // ASCII only (main.ts reads the bundle as one-byte text, which V8 also scans faster): every
  // other character is escaped, which means the same in strings, templates, regular
  // expressions and identifiers, and nothing in comments.
  const text = out.join('\n');
  if (/\\[^\x00-\x7f]/.test(text))
    throw new BundleError(`${entry}: a backslash before a non-ASCII character`);
  const body = text.replace(
    /[^\x00-\x7f]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
  const hash = createHash('sha256').update(body).digest('hex');
  return { text: `${BUNDLE_TAG}${hash}\n${body}`, modules: order.length };
}

/**
 * Run the bundle once on `argv` (in this process, its standard output captured) and return its
 * output and V8's code cache for it: the bytecode of every function the run compiled, so that a
 * measurement starts without parsing and compiling them again. The output must equal what the
 * modules print for the same command (measure.ts's measureMain): the bundle is checked here.
 */
async function train(file, text, argv) {
  const script = new Script(text, { filename: file });
  const fs = require('node:fs');
  let printed = '';
  const quietFs = {
    ...fs,
    writeSync: (fd, b, off = 0, len = b.length - off) => {
      if (fd !== 1) return fs.writeSync(fd, b, off, len);
      printed += Buffer.from(b.buffer, b.byteOffset + off, len).toString('utf8');
      return len;
    },
  };
  const entry = script.runInThisContext()((n) => (n === 'node:fs' ? quietFs : require(n)));
  const exitCode = process.exitCode;
  const took = entry.start(argv);
  const status = process.exitCode;
  process.exitCode = exitCode;
  const { measureMain } = await import(pathToFileURL(join(DIST, 'src/cli/measure.js')).href);
  let expected = '';
  const want = measureMain(argv, (line) => (expected += `${line}\n`));
  if (took !== true || status !== 0 || want !== 0 || printed !== expected)
    throw new BundleError(
      `${relative(DIST, file)}: measure ${argv.join(' ')} printed ${JSON.stringify(printed)} (exit ${status}), the modules ${JSON.stringify(expected)} (exit ${want})`,
    );
  return script.createCachedData();
}

/** The training runs: a fixture of the tests per platform (any image runs the same code). */
async function trainingRuns(dir) {
  const tdx = join(dir, 'tdvf.fd');
  const { buildTdvfImage, MIXED_SECTIONS } = await import(
    pathToFileURL(join(DIST, 'tests/unit/tdvf_images.js')).href
  );
  writeFileSync(tdx, buildTdvfImage(MIXED_SECTIONS).bytes);
  const amdsev = join(ROOT, 'tests/fixtures/sev-snp-measure/ovmf_AmdSev_suffix.bin');
  return {
    'src/cli/measure_snp.js': ['snp', '--ovmf', amdsev, '--vcpus', '4', '--vcpu-type', 'EPYC-v4'],
    'src/cli/measure_tdx.js': ['tdx', '--ovmf', tdx],
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const dir = mkdtempSync(join(tmpdir(), 'gmemlab-bundle-'));
  try {
    const runs = await trainingRuns(dir);
    for (const entry of ENTRIES) {
      const file = join(DIST, entry.replace(/\.js$/, '.bundle.js'));
      const cache = file.replace(/\.js$/, '.cache');
      // A failed build leaves no bundle (main.ts then runs the modules).
      rmSync(file, { force: true });
      rmSync(cache, { force: true });
      try {
        const { text } = bundle(entry);
        writeFileSync(file, text);
        const data = await train(file, text, runs[entry]);
        const hash = Buffer.from(text.slice(BUNDLE_TAG.length, BUNDLE_TAG.length + 64));
        writeFileSync(cache, Buffer.concat([hash, data]));
      } catch (e) {
        rmSync(file, { force: true });
        rmSync(cache, { force: true });
        throw e;
      }
    }
  } catch (e) {
    if (!(e instanceof BundleError)) throw e;
    process.stderr.write(`scripts/bundle.mjs: ${e.message}\n`);
    process.exitCode = 1;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
