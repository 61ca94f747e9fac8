/**
 * A strict JSON parser for one trace line. Unlike `JSON.parse` it rejects duplicate keys, keeps
 * integers exact (a JSON integer is returned as a bigint, so `4294967296` or a 400-digit number is
 * never rounded), refuses fractions and exponents where the caller wants integers (they come back
 * as `JsonNumber` and the field reader rejects them), limits nesting, and reports problems in its
 * own words with a column.
 */

export class JsonSyntaxError extends Error {
  constructor(
    readonly column: number,
    message: string,
  ) {
    super(message);
  }
}

/** A JSON number that is not an integer (`1.5`, `1e3`): kept as written. */
export class JsonNumber {
  constructor(readonly text: string) {}
}

export type JsonValue =
  null | boolean | string | bigint | JsonNumber | JsonValue[] | { [key: string]: JsonValue };

const MAX_DEPTH = 32;

/** Parse one JSON text. Throws JsonSyntaxError (column is 1-based). */
export function parseJsonLine(text: string): JsonValue {
  const p = new Parser(text);
  p.ws();
  const v = p.value(0);
  p.ws();
  if (p.i < text.length) p.fail('unexpected text after the JSON value');
  return v;
}

class Parser {
  i = 0;
  constructor(readonly s: string) {}

  fail(message: string, at = this.i): never {
    throw new JsonSyntaxError(at + 1, message);
  }

  ws(): void {
    const s = this.s;
    let i = this.i;
    for (;;) {
      const c = s.charCodeAt(i);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) i++;
      else break;
    }
    this.i = i;
  }

  value(depth: number): JsonValue {
    if (depth > MAX_DEPTH) this.fail(`nested deeper than ${MAX_DEPTH} levels`);
    const c = this.s[this.i];
    switch (c) {
      case '{':
        return this.object(depth);
      case '[':
        return this.array(depth);
      case '"':
        return this.string();
      case 't':
        return this.word('true', true);
      case 'f':
        return this.word('false', false);
      case 'n':
        return this.word('null', null);
      case undefined:
        return this.fail('unexpected end of line: expected a value');
      default:
        if (c === '-' || (c >= '0' && c <= '9')) return this.number();
        return this.fail(`unexpected character ${describeChar(c)}: expected a value`);
    }
  }

  word<T extends JsonValue>(w: string, v: T): T {
    if (this.s.startsWith(w, this.i)) {
      this.i += w.length;
      return v;
    }
    return this.fail('expected a value (true, false, null, a number, a string, [ or {)');
  }

  object(depth: number): { [key: string]: JsonValue } {
    const o: { [key: string]: JsonValue } = Object.create(null) as { [key: string]: JsonValue };
    this.i++;
    this.ws();
    if (this.s[this.i] === '}') {
      this.i++;
      return o;
    }
    for (;;) {
      this.ws();
      if (this.s[this.i] !== '"') this.fail('expected a "key" in double quotes');
      const at = this.i;
      const k = this.string();
      if (Object.prototype.hasOwnProperty.call(o, k))
        this.fail(
          `duplicate key ${k.length > 40 ? JSON.stringify(k.slice(0, 40)) + '…' : JSON.stringify(k)}`,
          at,
        );
      this.ws();
      if (this.s[this.i] !== ':') this.fail('expected ":" after the key');
      this.i++;
      this.ws();
      o[k] = this.value(depth + 1);
      this.ws();
      const c = this.s[this.i];
      if (c === ',') {
        this.i++;
        continue;
      }
      if (c === '}') {
        this.i++;
        return o;
      }
      this.fail(c === undefined ? 'unexpected end of line: expected , or }' : 'expected , or }');
    }
  }

  array(depth: number): JsonValue[] {
    const a: JsonValue[] = [];
    this.i++;
    this.ws();
    if (this.s[this.i] === ']') {
      this.i++;
      return a;
    }
    for (;;) {
      this.ws();
      a.push(this.value(depth + 1));
      this.ws();
      const c = this.s[this.i];
      if (c === ',') {
        this.i++;
        continue;
      }
      if (c === ']') {
        this.i++;
        return a;
      }
      this.fail(c === undefined ? 'unexpected end of line: expected , or ]' : 'expected , or ]');
    }
  }

  string(): string {
    const s = this.s;
    const start = ++this.i;
    // Fast path: up to the next quote, when there is no escape or control character before it
    // (one native scan, even for a 32 MiB hex string).
    const q = s.indexOf('"', start);
    if (q >= 0) {
      const chunk = s.slice(start, q);
      if (!SPECIAL.test(chunk)) {
        this.i = q + 1;
        return chunk;
      }
    }
    let i = start;
    let out = s.slice(start, i);
    for (;;) {
      if (i >= s.length) this.fail('unterminated string', start - 1);
      const c = s.charCodeAt(i);
      if (c === 0x22) {
        this.i = i + 1;
        return out;
      }
      if (c < 0x20) this.fail('control character in a string (write it as \\uXXXX)', i);
      if (c !== 0x5c) {
        out += s[i];
        i++;
        continue;
      }
      const e = s[i + 1];
      i += 2;
      switch (e) {
        case '"':
        case '\\':
        case '/':
          out += e;
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          const h = s.slice(i, i + 4);
          if (!/^[0-9a-fA-F]{4}$/.test(h)) this.fail('\\u takes four hex digits', i - 2);
          out += String.fromCharCode(parseInt(h, 16));
          i += 4;
          break;
        }
        default:
          this.fail(`invalid escape "\\${e ?? ''}" in a string`, i - 2);
      }
    }
  }

  number(): bigint | JsonNumber {
    const m = NUMBER.exec(this.s.slice(this.i, this.i + 1024));
    if (m === null) return this.fail('malformed number');
    const t = m[0];
    if (t.length >= 1024) this.fail('number longer than 1023 characters');
    const at = this.i;
    this.i += t.length;
    if (m[1] !== undefined || m[2] !== undefined) return new JsonNumber(t);
    if (/^-?0\d/.test(t)) this.fail('a number may not have leading zeros', at);
    return BigInt(t);
  }
}

/** Characters that a JSON string must escape, or that start an escape. */
const SPECIAL = /[\\\u0000-\u001f]/;

/** A JSON number: groups are the fraction and the exponent. */
const NUMBER = /^-?\d+(\.\d+)?([eE][+-]?\d+)?/;

function describeChar(c: string): string {
  const code = c.codePointAt(0)!;
  if (code === 0xfffd) return 'U+FFFD (bytes that are not UTF-8)';
  if (code < 0x20 || code > 0x7e) return `U+${code.toString(16).toUpperCase().padStart(4, '0')}`;
  return `"${c}"`;
}
