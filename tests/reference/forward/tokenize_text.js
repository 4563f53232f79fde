// Token ids of an evaluation text by the reference tokenizer (Hugging Face `tokenizers`, the
// Node binding installed under tests/reference/tokenizer/), following ../shared/reference.md:
// lines [first, last] (1-based, inclusive) without their line breaks, joined with "\n\n",
// encoded once with no special tokens. Writes int32 little-endian ids, at most `max` of them.
//
//   node tests/reference/forward/tokenize_text.js TOKENIZER_JSON TEXT FIRST LAST OUT [MAX]
//   node tests/reference/forward/tokenize_text.js TOKENIZER_JSON --string "text" OUT
'use strict';
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require(path.join(__dirname, '..', 'tokenizer', 'node_modules', 'tokenizers'));

function readLines(file, first, last) {
  let lines = fs.readFileSync(file, 'utf8').split('\n');
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();  // final line break
  return lines.slice(first - 1, last).join('\n\n');
}

async function main() {
  const args = process.argv.slice(2);
  const tokenizer = Tokenizer.fromFile(args[0]);
  let text, out, max = Infinity;
  if (args[1] === '--string') {
    [text, out] = [args[2], args[3]];
  } else {
    text = readLines(args[1], Number(args[2]), Number(args[3]));
    out = args[4];
    if (args.length > 5) max = Number(args[5]);
  }
  const encoding = await tokenizer.encode(text, null, { addSpecialTokens: false });
  const ids = encoding.getIds().slice(0, max);
  fs.writeFileSync(out, Buffer.from(Int32Array.from(ids).buffer));
  console.error(`${out}: ${ids.length} ids of ${encoding.getIds().length}`);
}

main();
