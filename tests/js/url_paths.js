#!/usr/bin/env node
// Which file a web server sends for each shard path of a model served at http://h/m/model.json.
//
//   node url_paths.js <paths.json> <out.json>
//
// tfjs 4.22's HTTP loader fetches `pathPrefix + path` (tfjs-core/src/io/http.ts, getWeightUrls),
// which the browser parses as a WHATWG URL (the same parser as Node's URL); a server then
// percent-decodes the URL's path. Writes, per input path, that decoded path, or "" when it cannot
// be decoded (a malformed percent escape).
'use strict';

const fs = require('fs');

const [input, output] = process.argv.slice(2);
const prefix = 'http://h/m/';
const served = JSON.parse(fs.readFileSync(input, 'utf8')).map((p) => {
  try {
    return decodeURIComponent(new URL(prefix + p).pathname);
  } catch (error) {
    return '';
  }
});
fs.writeFileSync(output, JSON.stringify(served));
