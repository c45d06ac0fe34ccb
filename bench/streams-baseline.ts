// The baseline for bench/streams: an image-stream relay written the way Wave's Go server
// (multipart.go) does it — each viewer gets a queue of up to 256 frames, a publish that finds a queue
// full drops the frame for that viewer, and each viewer writes its queue out in order, with Wave's
// framing (`Content-Type`, `Content-Length`, frame, delimiter). Two departures, both in the
// baseline's favour: a viewer that disconnects is removed (Wave keeps it until `unlink`), and every
// write goes straight to the socket (Wave's Go writer buffers the delimiter until the next frame).
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';

const QUEUE = 256;

interface Frame {
  type: string;
  data: Buffer;
}

interface Viewer {
  res: ServerResponse;
  boundary: string;
  queue: Frame[];
  writing: boolean;
}

export function createBaselineRelay(): (req: IncomingMessage, res: ServerResponse) => void {
  const streams = new Map<string, Set<Viewer>>();

  function pump(v: Viewer): void {
    v.writing = true;
    for (;;) {
      const f = v.queue.shift();
      if (!f) break;
      v.res.write(`Content-Type: ${f.type}\r\nContent-Length: ${f.data.length}\r\n\r\n`);
      v.res.write(f.data);
      if (!v.res.write(`\r\n--${v.boundary}\r\n`)) {
        v.res.once('drain', () => pump(v));
        return;
      }
    }
    v.writing = false;
  }

  return (req, res) => {
    const name = (req.url ?? '/').split('?', 1)[0]!.replace(/^\/_m\//, '');
    if (req.method === 'POST') {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const frame = { type: req.headers['content-type'] ?? 'application/octet-stream', data: Buffer.concat(chunks) };
        let viewers = streams.get(name);
        if (!viewers) streams.set(name, (viewers = new Set()));
        for (const v of viewers) {
          if (v.queue.length >= QUEUE) continue; // full: drop
          v.queue.push(frame);
          if (!v.writing) pump(v);
        }
        res.end();
      });
      return;
    }
    const viewers = streams.get(name);
    if (req.method === 'DELETE') {
      streams.delete(name);
      for (const v of viewers ?? []) v.res.end();
      res.end();
      return;
    }
    if (!viewers) {
      res.statusCode = 404;
      res.end();
      return;
    }
    const v: Viewer = { res, boundary: randomBytes(30).toString('hex'), queue: [], writing: false };
    viewers.add(v);
    res.once('close', () => viewers.delete(v));
    res.writeHead(200, { 'Content-Type': `multipart/x-mixed-replace; boundary=${v.boundary}` });
    res.flushHeaders(); // Go sends them with the first frame; the bench wants to know the viewer is in
  };
}

/**
 * The floor: the least work a relay can do per viewer and frame, to show what is left to gain. One
 * boundary for every viewer (unsafe: a publisher could forge parts), each frame framed once, with
 * wharf's framing (the next part's header block right after the frame) in a single Buffer that is
 * then one `socket.write` per viewer, straight to the socket. No backpressure, no skipping: it is
 * only for viewers that keep up.
 */
export function createFloorRelay(): (req: IncomingMessage, res: ServerResponse) => void {
  const boundary = randomBytes(16).toString('hex');
  const streams = new Map<string, { latest: Buffer; type: string; viewers: Set<ServerResponse> }>();
  const chunk = (body: Buffer[]): Buffer => {
    const size = body.reduce((n, b) => n + b.length, 0);
    return Buffer.concat([Buffer.from(`${size.toString(16)}\r\n`), ...body, Buffer.from('\r\n')]);
  };

  return (req, res) => {
    const name = (req.url ?? '/').split('?', 1)[0]!.replace(/^\/_m\//, '');
    if (req.method === 'POST') {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const type = req.headers['content-type'] ?? 'application/octet-stream';
        const wire = chunk([...chunks, Buffer.from(`\r\n--${boundary}\r\nContent-Type: ${type}\r\n\r\n`)]);
        let stream = streams.get(name);
        if (!stream) streams.set(name, (stream = { latest: wire, type, viewers: new Set() }));
        stream.latest = wire;
        stream.type = type;
        for (const v of stream.viewers) v.socket?.write(wire);
        res.end();
      });
      return;
    }
    const stream = streams.get(name);
    if (req.method === 'DELETE') {
      streams.delete(name);
      for (const v of stream?.viewers ?? []) v.socket?.end('0\r\n\r\n');
      res.end();
      return;
    }
    if (!stream) {
      res.statusCode = 404;
      res.end();
      return;
    }
    res.writeHead(200, { 'Content-Type': `multipart/x-mixed-replace; boundary=${boundary}`, 'Transfer-Encoding': 'chunked' });
    res.flushHeaders();
    stream.viewers.add(res);
    res.once('close', () => stream.viewers.delete(res));
    // The opening dash-boundary and header block, then the latest frame (itself followed by a header block).
    res.socket?.write(chunk([Buffer.from(`--${boundary}\r\nContent-Type: ${stream.type}\r\n\r\n`)]));
    res.socket?.write(stream.latest);
  };
}
