/**
 * The strict JSON line parser (src/trace/json.ts): what JSON.parse accepts it accepts (with
 * integers exact), and it rejects duplicate keys, deep nesting and malformed text with a column.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { JsonNumber, JsonSyntaxError, parseJsonLine } from '../../src/trace/json.js';

test('values: integers are exact bigints, other numbers are kept as written', () => {
  // Objects have no prototype (so no key is special); compare their own keys.
  const o = parseJsonLine('{"a":1,"b":-0,"c":18446744073709551617,"d":[true,false,null]}');
  assert.deepEqual(
    { ...(o as object) },
    {
      a: 1n,
      b: 0n,
      c: 18446744073709551617n,
      d: [true, false, null],
    },
  );
  assert.deepEqual(parseJsonLine('1.5'), new JsonNumber('1.5'));
  assert.deepEqual(parseJsonLine(' 4e3 '), new JsonNumber('4e3'));
});

test('strings: escapes as JSON.parse decodes them, a long string without escapes', () => {
  for (const s of ['"a\\nb"', '"\\u0041\\"\\\\\\/"', '"\\b\\f\\r\\t"', '"é ✓"']) {
    assert.equal(parseJsonLine(s), JSON.parse(s) as string, s);
  }
  const hex = 'ab'.repeat(1 << 20);
  assert.equal(parseJsonLine(`"${hex}"`), hex);
});

test('errors: each with its column', () => {
  const cases: Array<[string, number, RegExp]> = [
    ['{"a":1,"a":2}', 8, /duplicate key "a"/],
    ['{"a":1,}', 8, /expected a "key"/],
    ['{"a" 1}', 6, /expected ":"/],
    ['[1 2]', 4, /expected , or \]/],
    ['"abc', 1, /unterminated string/],
    ['"a\u0001"', 3, /control character/],
    ['"\\x"', 2, /invalid escape/],
    ['"\\u12"', 2, /four hex digits/],
    ['01', 1, /leading zeros/],
    ['-', 1, /malformed number/],
    ['{} x', 4, /unexpected text after/],
    ['', 1, /unexpected end of line/],
    ['tru', 1, /expected a value/],
    ['\ufffd', 1, /U\+FFFD \(bytes that are not UTF-8\)/],
    [`${'['.repeat(40)}${']'.repeat(40)}`, 34, /nested deeper than 32/],
  ];
  for (const [text, column, msg] of cases) {
    assert.throws(
      () => parseJsonLine(text),
      (e: unknown) => e instanceof JsonSyntaxError && e.column === column && msg.test(e.message),
      text,
    );
  }
});

test('a key named __proto__ is an ordinary key', () => {
  const o = parseJsonLine('{"__proto__":1}') as Record<string, unknown>;
  assert.equal(Object.getPrototypeOf(o), null);
  assert.equal(o['__proto__'], 1n);
});
