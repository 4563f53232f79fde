// Encode time of Hugging Face tokenizers (the Rust library through its Node binding, installed
// in tests/reference/tokenizer/node_modules) for a text read by the evaluation protocol of
// ../shared/reference.md: the baseline of `qshard bench tokenizer`. Prints one JSON object
// (median and all timings, token count) and, with --ids-out, writes the ids as raw int32.
//
//   node bench/tokenizer_node.js --tokenizer DIR/tokenizer.json --text wiki.test.raw --repeats 3
'use strict';
const fs = require('fs');
const path = require('path');

const MODULES = path.resolve(__dirname, '..', 'tests', 'reference', 'tokenizer', 'node_modules');
const { Tokenizer } = require(path.join(MODULES, 'tokenizers'));

function parseArgs(argv) {
  const args = { repeats: 3 };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '').replace(/-./g, (m) => m[1].toUpperCase());
    if (i + 1 >= argv.length) throw new Error(`${argv[i]} needs a value`);
    args[key] = argv[i + 1];
  }
  if (!args.tokenizer || !args.text) throw new Error('--tokenizer and --text are required');
  args.repeats = Number(args.repeats);
  return args;
}

// Lines without their line breaks, joined with "\n\n" (tests/reference/tokenizer/make_golden.js).
function evalText(file) {
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines.map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l)).join('\n\n');
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const tokenizer = Tokenizer.fromFile(args.tokenizer);
  const text = evalText(args.text);
  const seconds = [];
  let ids = [];
  for (let r = 0; r < args.repeats; ++r) {
    const start = process.hrtime.bigint();
    const encoding = await tokenizer.encode(text, null, { addSpecialTokens: false });
    ids = encoding.getIds();
    seconds.push(Number(process.hrtime.bigint() - start) / 1e9);
  }
  if (args.idsOut) fs.writeFileSync(args.idsOut, Buffer.from(Int32Array.from(ids).buffer));
  const version = JSON.parse(fs.readFileSync(path.join(MODULES, 'tokenizers', 'package.json'), 'utf8')).version;
  console.log(JSON.stringify({ seconds: median(seconds), all_seconds: seconds, tokens: ids.length,
                               tokenizers: version, node: process.version }));
}

main().catch((error) => {
  console.error(error.message);
  process.exit(1);
});
