// Golden token ids from Hugging Face tokenizers (the Rust library through its Node binding),
// the oracle for tests/tokenizer/tokenizer_test.cc. See README.md in this folder.
//
// Usage (from this folder): npm install && node make_golden.js
// Reads ../../../../shared/data (the shared data folder beside the repository).
'use strict';
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require('tokenizers');

const HERE = __dirname;
const DATA = path.resolve(HERE, '..', '..', '..', '..', 'shared', 'data');
const TINYSTORIES_JSON = path.join(DATA, 'tinystories-656k', 'tokenizer.json');
const GPT2_DIR = path.join(DATA, 'gpt2-tokenizer');
const WIKI = path.join(DATA, 'wikitext-2-raw', 'wiki.test.raw');
const PTB = path.join(DATA, 'ptb', 'ptb.valid.txt');

// The evaluation protocol of shared/reference.md: lines first..last (1-based, inclusive),
// without their line breaks, joined with "\n\n".
function evalText(file, first = 1, last = 0) {
  let lines = fs.readFileSync(file, 'utf8').split('\n');
  if (lines[lines.length - 1] === '') lines.pop();  // a final line break ends the last line
  lines = lines.map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
  return lines.slice(first - 1, last === 0 ? lines.length : last).join('\n\n');
}

const codePoints = (s) => [...s].length;

// Token ids as raw little-endian uint16 (every vocabulary here is below 65,536 tokens).
function writeIds(name, ids) {
  const buffer = Buffer.alloc(ids.length * 2);
  ids.forEach((id, i) => {
    if (id < 0 || id > 0xffff) throw new Error(`${name}: id ${id} does not fit uint16`);
    buffer.writeUInt16LE(id, i * 2);
  });
  fs.writeFileSync(path.join(HERE, name), buffer);
  console.log(`${name}: ${ids.length} tokens`);
}

async function encode(tokenizer, text) {
  const encoding = await tokenizer.encode(text, null, { addSpecialTokens: false });
  return encoding.getIds();
}

// GPT-2's tokenizer.json as Hugging Face publishes it, built from encoder.json + vocab.bpe.
function gpt2TokenizerJson() {
  const vocab = JSON.parse(fs.readFileSync(path.join(GPT2_DIR, 'encoder.json'), 'utf8'));
  const merges = fs.readFileSync(path.join(GPT2_DIR, 'vocab.bpe'), 'utf8').split('\n')
      .filter((line) => line !== '' && !line.startsWith('#version'));
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  return {
    version: '1.0', truncation: null, padding: null,
    added_tokens: [{ id: 50256, content: '<|endoftext|>', single_word: false, lstrip: false,
                     rstrip: false, normalized: true, special: true }],
    normalizer: null, pre_tokenizer: byteLevel, post_processor: byteLevel, decoder: byteLevel,
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '',
             end_of_word_suffix: '', fuse_unk: false, byte_fallback: false, vocab, merges },
  };
}

// Variants of TinyStories-656K's tokenizer.json that exercise the sections and options its
// own file does not use. Written to variants/ so the C++ test loads the very same files.
function variants(base) {
  const clone = () => JSON.parse(JSON.stringify(base));
  const out = {};

  // Metaspace pre-tokenizer and decoder instead of the Prepend/Replace normalizer.
  let v = clone();
  v.normalizer = null;
  v.pre_tokenizer = { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'first', split: true };
  v.decoder = { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'first', split: true };
  out.metaspace = v;

  // All 256 <0xNN> tokens present: byte fallback takes over from <unk>.
  v = clone();
  for (let b = 0; b < 256; b++) {
    v.model.vocab[`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`] = 2048 + b;
  }
  out.byte_fallback = v;

  // Unknown characters not fused; added tokens with lstrip/rstrip, single_word, and one
  // matched in the raw text (normalized: false); merges given as [a, b] pairs.
  v = clone();
  v.model.fuse_unk = false;
  v.model.merges = v.model.merges.map((m) => m.split(' '));
  v.added_tokens[0].lstrip = true;
  v.added_tokens[0].rstrip = true;
  v.added_tokens[1].normalized = false;
  v.added_tokens[2].single_word = true;
  out.options = v;

  // A pre-tokenizer sequence: split before each '▁', then the GPT-2 regex; ignore_merges.
  v = clone();
  v.pre_tokenizer = { type: 'Sequence', pretokenizers: [
    { type: 'Split', pattern: { String: '\u2581' }, behavior: 'MergedWithNext', invert: false },
    { type: 'Split', pattern: { Regex: "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+" },
      behavior: 'Isolated', invert: false },
  ] };
  v.model.ignore_merges = true;
  out.split = v;

  // continuing_subword_prefix "##": every token also exists as "##token", merges as
  // (a, ##b) -> ab and (##a, ##b) -> ##ab.
  v = clone();
  const vocab = v.model.vocab;
  let next = 2048;
  for (const token of Object.keys(base.model.vocab)) {
    if (base.model.vocab[token] >= 3) vocab['##' + token] = next++;
  }
  v.model.merges = base.model.merges.flatMap((m) => {
    const [a, b] = m.split(' ');
    return [`${a} ##${b}`, `##${a} ##${b}`];
  });
  v.model.continuing_subword_prefix = '##';
  v.decoder = null;
  out.prefix = v;
  return out;
}

// Deterministic pseudo-random text over an alphabet that mixes every class the GPT-2 split
// distinguishes, known and unknown characters, and added-token texts.
function randomStrings(count, length) {
  let state = 12345;
  const random = () => {  // mulberry32
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const alphabet = [...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789',
    ' ', ' ', ' ', ' ', '  ', '\n', '\n\n', '\t', "'", "'s", "'t", "'re", "'ll", ',', '.', '!', '?',
    '=', '@', '-', '"', '\u00e9', '\u00df', '\u65e5', '\u{1F600}', '\u00a0', '\u2581', '\u0663',
    '\u00bd', '\u2028', '<unk>', ' <unk>', '<|start_story|>', '<|end_story|>', '<|endoftext|>'];
  const out = [];
  for (let i = 0; i < count; i++) {
    let s = '';
    while (s.length < length) s += alphabet[Math.floor(random() * alphabet.length)];
    out.push(s);
  }
  return out;
}

const hexBytes = (bytes) => Buffer.from(bytes).toString('hex');

function adversarialStrings() {
  const text = (name, value) => ({ name, text: value });
  // Invalid UTF-8 goes through the same lossy conversion as the Node binding's strings.
  const bytes = (name, value) => {
    const buffer = Buffer.from(value);
    return { name, hex: hexBytes(buffer), lossy_text: buffer.toString('utf8') };
  };
  const list = [
    text('empty', ''),
    text('golden: the <unk> cat', ' the <unk> cat'),
    text('golden: a=b', 'a=b'),
    text('golden: a==b', 'a==b'),
    text('golden: naive cafe', 'na\u00efve caf\u00e9'),
    text('golden: start_story Once', '<|start_story|>Once'),
    text('story', 'Once upon a time, there was a little girl named Lily. She loved to play outside.'),
    text('single space', ' '),
    text('spaces only', '     '),
    text('leading and trailing spaces', '   spaced out   '),
    text('space runs', 'a  b   c    d\t\te'),
    text('newlines', '\n\nfirst line\n\n second\n \n'),
    text('whitespace before word', ' \t \n x'),
    text('nbsp and unicode spaces', 'a\u00a0b\u2003c\u3000d\u2028e\u0085f'),
    text('contractions', "I'm sure don't you'll we've they're it's he'd 'S 'LL"),
    text('apostrophes', "''s ' 'x rock'n'roll"),
    text('numbers', '1,234.56 and 2024-01-01 then 3.14159'),
    text('unicode digits', '\u0663\u0664\u0665 \u00bd \u2153 \u216b x\u00b2'),
    text('unknown punctuation', '= @ # % ^ & * ~ ` | \\ { } [ ] ( )'),
    text('cjk', '\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8'),
    text('emoji', 'emoji \u{1F600}\u{1F44D}\u{1F3FD} test \u{1F1FA}\u{1F1F8}'),
    text('greek cyrillic arabic', '\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac \u0420\u0443\u0441\u0441\u043a\u0438\u0439 \u0639\u0631\u0628\u064a'),
    text('combining marks', 'e\u0301 a\u0308 \u0928\u093f'),
    text('control chars', 'a\u0000b\u0007c\u001bd\u007f'),
    text('metaspace char in input', '\u2581already\u2581\u2581spaced \u2581'),
    text('long word', 'a'.repeat(3000)),
    text('long mixed word', 'abcxyz'.repeat(700)),
    text('long digits', '1234567890'.repeat(150)),
    text('long unknown run', '@'.repeat(500) + 'x' + '='.repeat(10)),
    text('special alone', '<|start_story|>'),
    text('special end', 'The end.<|end_story|>'),
    text('unk literal inside word', 'x<unk>y'),
    text('unk literal after spaces', ' <unk>  <unk>\t<unk>'),
    text('specials adjacent', '<|start_story|><|end_story|><unk>'),
    text('special with spaces', ' <|start_story|> Once upon <|end_story|> '),
    text('special word boundaries', 'a<|end_story|>b <|end_story|> c'),
    text('endoftext', 'a<|endoftext|>b <|endoftext|>'),
    text('metaspace unk', '\u2581<unk>'),
    text('partial special', '<|start_story| <|end_story <unk'),
    bytes('invalid: lone 0xff', [0xff, 0x61]),
    bytes('invalid: truncated euro', [0x61, 0xe2, 0x82, 0x62]),
    bytes('invalid: trailing lead byte', [0x61, 0xc3]),
    bytes('invalid: surrogate', [0xed, 0xa0, 0x80, 0x61]),
    bytes('invalid: beyond U+10FFFF', [0xf4, 0x90, 0x80, 0x80]),
    bytes('invalid: overlong slash', [0xc0, 0xaf, 0x20, 0x78]),
    bytes('invalid: truncated emoji', [0xf0, 0x9f, 0x98, 0x20, 0x78]),
    bytes('invalid: mixed', [0x6f, 0x6b, 0xe2, 0x82, 0xac, 0x6f, 0x6b, 0xe2, 0x82, 0x6f, 0x6b, 0x80, 0x80]),
  ];
  randomStrings(24, 300).forEach((s, i) => list.push(text(`random ${i}`, s)));
  return list;
}

async function goldenForTokenizer(tokenizer, strings) {
  const results = [];
  for (const s of strings) {
    const input = s.text !== undefined ? s.text : s.lossy_text;
    const ids = await encode(tokenizer, input);
    results.push({
      ids,
      decoded: await tokenizer.decode(ids, false),
      decoded_skip_special: await tokenizer.decode(ids, true),
    });
  }
  return results;
}

async function main() {
  const version = require('tokenizers/package.json').version;
  const tinyStories = Tokenizer.fromFile(TINYSTORIES_JSON);
  const gpt2 = Tokenizer.fromString(JSON.stringify(gpt2TokenizerJson()));

  // Evaluation texts, checked against the character counts in shared/reference.md.
  const texts = [
    ['tinystories_wikitext2_test.ids16', evalText(WIKI), 1292912],
    ['tinystories_wikitext2_test_lines1-2179.ids16', evalText(WIKI, 1, 2179), 633737],
    ['tinystories_wikitext2_test_lines2180-4358.ids16', evalText(WIKI, 2180, 4358), 659173],
    ['tinystories_ptb_valid.ids16', evalText(PTB), 403150],
  ];
  for (const [name, value, chars] of texts) {
    if (codePoints(value) !== chars) throw new Error(`${name}: ${codePoints(value)} chars, expected ${chars}`);
    writeIds(name, await encode(tinyStories, value));
  }
  writeIds('gpt2_wikitext2_test_lines1-2000.ids16', await encode(gpt2, evalText(WIKI, 1, 2000)));

  const variantDir = path.join(HERE, 'variants');
  fs.mkdirSync(variantDir, { recursive: true });
  const base = JSON.parse(fs.readFileSync(TINYSTORIES_JSON, 'utf8'));
  const tokenizers = { tinystories: tinyStories, gpt2 };
  for (const [name, spec] of Object.entries(variants(base))) {
    const file = path.join(variantDir, `tinystories_${name}.json`);
    fs.writeFileSync(file, JSON.stringify(spec));
    tokenizers[`tinystories_${name}`] = Tokenizer.fromFile(file);
  }

  const strings = adversarialStrings();
  const results = {};
  for (const [name, tokenizer] of Object.entries(tokenizers)) {
    results[name] = await goldenForTokenizer(tokenizer, strings);
  }
  const golden = { generator: 'tests/reference/tokenizer/make_golden.js', tokenizers_version: version,
                   strings, results };
  fs.writeFileSync(path.join(HERE, 'adversarial.json'), JSON.stringify(golden));
  console.log(`adversarial.json: ${strings.length} strings x ${Object.keys(results).length} tokenizers`);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
