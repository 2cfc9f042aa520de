// Spore's JavaScript HTTP example: a component in Spore's `spore:host/http` world
// (componentize-js), implementing `wasi:http/incoming-handler` on the WASI types. A fresh
// instance serves each request; every request prints `METHOD PATH` to stdout.
//   GET /        a greeting (the `GREETING_NAME` environment variable)
//   POST /echo   answers the request body, with its content type
//   GET /trap    throws (the host answers 500 and the server goes on)
import { getEnvironment } from 'wasi:cli/environment@0.2.12';
import {
  Fields,
  OutgoingBody,
  OutgoingResponse,
  ResponseOutparam,
} from 'wasi:http/types@0.2.12';

// wasi:io streams take at most 4096 bytes per blocking write.
const CHUNK = 4096;
const encoder = new TextEncoder();

function readBody(request) {
  const body = request.consume();
  const stream = body.stream();
  const chunks = [];
  for (;;) {
    try {
      chunks.push(stream.blockingRead(BigInt(CHUNK)));
    } catch (e) {
      if (e?.payload?.tag === 'closed' || e?.tag === 'closed') break;
      throw e;
    }
  }
  stream[Symbol.dispose]?.();
  const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.length;
  }
  return all;
}

function respond(out, status, body, contentType) {
  const response = new OutgoingResponse(Fields.fromList([['content-type', encoder.encode(contentType)]]));
  response.setStatusCode(status);
  const outgoing = response.body();
  ResponseOutparam.set(out, { tag: 'ok', val: response });
  const stream = outgoing.write();
  for (let at = 0; at < body.length; at += CHUNK) {
    stream.blockingWriteAndFlush(body.subarray(at, at + CHUNK));
  }
  stream[Symbol.dispose]?.();
  OutgoingBody.finish(outgoing, undefined);
}

export const incomingHandler = {
  handle(request, out) {
    const method = request.method().tag.toUpperCase();
    const path = (request.pathWithQuery() ?? '/').split('?')[0];
    console.log(`${method} ${path}`);
    if (method === 'GET' && path === '/') {
      const name = Object.fromEntries(getEnvironment()).GREETING_NAME ?? 'world';
      respond(out, 200, encoder.encode(`Hello, ${name}, from a JavaScript HTTP component on Spore!\n`), 'text/plain');
    } else if (method === 'POST' && path === '/echo') {
      const header = request.headers().entries().find(([k]) => k.toLowerCase() === 'content-type');
      const type = header ? new TextDecoder().decode(header[1]) : 'application/octet-stream';
      respond(out, 200, readBody(request), type);
    } else if (path === '/trap') {
      throw new Error('the /trap route throws on purpose');
    } else {
      respond(out, 404, encoder.encode('not found\n'), 'text/plain');
    }
  },
};
