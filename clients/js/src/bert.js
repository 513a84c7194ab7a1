// BERT's normaliser and pre-tokenizer exactly as the Rust `tokenizers` library has them.
//
// `@huggingface/tokenizers` 0.2.0 differs from the Rust library on text outside ASCII: it does
// not put spaces around CJK ideographs outside the Basic Multilingual Plane (it looks at UTF-16
// code units) and its ranges differ from Rust's near U+2B820; it lower-cases a final capital sigma
// to "ς" where Rust gives "σ"; it lower-cases before stripping accents; and its character classes
// (controls, white space, punctuation, marks) follow the Unicode version of the Node runtime.
// These two functions replace the library's on a tokenizer whose normaliser is a BertNormalizer
// and whose pre-tokenizer is a BertPreTokenizer, with the Rust library's own character classes
// (src/unicode-tables.js, read off it by tools/unicode-tables.py). Added tokens and WordPiece
// stay the library's; Unicode normalisation (NFD, to strip accents) stays the runtime's.

import { CHINESE, LOWERCASE, MARK, PUNCT, REMOVED, SPACE, SPLIT } from "./unicode-tables.js";

/** A regular-expression character class body from [first, last, first, last, ...] code points. */
function charClass(flat) {
  let out = "";
  for (let i = 0; i < flat.length; i += 2) {
    out += `\\u{${flat[i].toString(16)}}`;
    if (flat[i + 1] !== flat[i]) out += `-\\u{${flat[i + 1].toString(16)}}`;
  }
  return out;
}

const REMOVED_RE = new RegExp(`[${charClass(REMOVED)}]`, "gu");
const SPACE_RE = new RegExp(`[${charClass(SPACE)}]`, "gu");
const CHINESE_RE = new RegExp(`[${charClass(CHINESE)}]`, "gu");
const MARK_RE = new RegExp(`[${charClass(MARK)}]`, "gu");
const WORD_RE = new RegExp(`[^${charClass(SPLIT)}${charClass(PUNCT)}]+|[${charClass(PUNCT)}]`, "gu");
const LOWER = new Map(Object.entries(LOWERCASE).map(([code, lower]) => [Number(code), lower]));
// Printable ASCII: nothing to clean, no CJK, no accents, and `toLowerCase` is Rust's there.
const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;
const ASCII = /^[\x00-\x7f]*$/;

function lowercase(text) {
  if (ASCII.test(text)) return text.toLowerCase();
  let out = "";
  for (const char of text) out += LOWER.get(char.codePointAt(0)) ?? char;
  return out;
}

/**
 * The Rust library's `BertNormalizer` with the options of a tokenizer.json's "normalizer".
 * @param {{clean_text?: boolean, handle_chinese_chars?: boolean, strip_accents?: boolean|null, lowercase?: boolean}} config
 * @returns {(text: string) => string}
 */
export function bertNormalizer(config) {
  const clean = config.clean_text ?? true;
  const chinese = config.handle_chinese_chars ?? true;
  const lower = config.lowercase ?? true;
  const strip = config.strip_accents ?? lower;
  return (text) => {
    if (PRINTABLE_ASCII.test(text)) return lower ? text.toLowerCase() : text;
    if (clean) text = text.replace(REMOVED_RE, "").replace(SPACE_RE, " ");
    if (chinese) text = text.replace(CHINESE_RE, " $& ");
    if (strip) text = text.normalize("NFD").replace(MARK_RE, "");
    if (lower) text = lowercase(text);
    return text;
  };
}

/**
 * The Rust library's `BertPreTokenizer`: split at white space (dropped) and around every
 * punctuation character (kept as a word of its own).
 * @param {string} text
 * @returns {string[]}
 */
export function bertPreTokenize(text) {
  return text.match(WORD_RE) ?? [];
}
