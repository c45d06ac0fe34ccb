// One staged file on its way into S3 (`Staging.file` of s3-staging.ts), written straight to its final
// key: a file smaller than a part is one PutObject at its end; a larger one a multipart upload,
// one part in flight at a time while the next one fills. So a file holds at most two parts in
// memory, and `write` says to wait (backpressure from S3 to the socket) while a part is in flight
// and the next one is full.
import { contentTypeFor } from '../common/mime.js';
import type { S3Io } from './s3-client.js';
import type { StagedFile } from './storage.js';

/**
 * Where a writer is. One S3 call at most is on its way in `sending`:
 *
 *   open ──part full──▶ sending ──landed──▶ open (or straight on to the next part, or to ending)
 *   open ──end──▶ ending: the single PutObject, or the last part and CompleteMultipartUpload ──▶ done
 *   any ──destroy or failure──▶ failed, once the call on its way landed and the multipart upload was aborted
 */
type WriterState = 'open' | 'sending' | 'ending' | 'done' | 'failed';

function noop(): void {}

export class S3FileWriter implements StagedFile {
  readonly done: Promise<number>;
  /** The object's ETag and when it was finished: known once `done` resolved. */
  etag = '';
  mtimeMs = 0;
  private state: WriterState = 'open';
  private ended = false;
  private held: Buffer[] = [];
  private heldBytes = 0;
  private bytes = 0;
  private owed = false;
  private uploadId: string | undefined;
  private readonly parts: Array<{ ETag: string; PartNumber: number }> = [];
  /** The S3 call on its way (a part, the put, the completion): a failure waits for it to land. */
  private flight: Promise<unknown> = Promise.resolve();
  private failure: Error | undefined;
  private resolveDone!: (size: number) => void;
  private rejectDone!: (err: Error) => void;

  constructor(
    private readonly io: S3Io,
    readonly key: string,
    rel: string,
    private readonly partSize: number,
    private readonly drain: () => void,
    private readonly warn: (message: string) => void,
    private readonly type = contentTypeFor(rel),
  ) {
    this.done = new Promise<number>((resolve, reject) => {
      this.resolveDone = resolve;
      this.rejectDone = reject;
    });
    this.done.catch(noop);
  }

  write(chunk: Buffer): boolean {
    if (this.ended || (this.state !== 'open' && this.state !== 'sending')) return true;
    this.held.push(chunk);
    this.heldBytes += chunk.length;
    this.bytes += chunk.length;
    if (this.heldBytes < this.partSize) return true;
    if (this.state === 'open') this.sendPart();
    if (this.state !== 'sending' || this.heldBytes < this.partSize) return true;
    this.owed = true;
    return false;
  }

  end(): void {
    if (this.ended || (this.state !== 'open' && this.state !== 'sending')) return;
    this.ended = true;
    if (this.state === 'open') this.finish();
  }

  destroy(err: Error): void {
    this.fail(err);
  }

  /** Takes what is held: the bytes of one call. */
  private take(): Buffer {
    const body = this.held.length === 1 ? this.held[0]! : Buffer.concat(this.held, this.heldBytes);
    this.held = [];
    this.heldBytes = 0;
    return body;
  }

  /** From `open`: the next part on its way (the multipart upload created first if need be). */
  private sendPart(): void {
    this.state = 'sending';
    const body = this.take();
    const number = this.parts.length + 1;
    this.fly(async () => {
      this.uploadId ??= await this.io.createMultipart(this.key, this.type);
      const etag = await this.io.uploadPart(this.key, this.uploadId, number, body);
      this.parts.push({ ETag: etag, PartNumber: number });
    }, () => this.landed());
  }

  /** A part landed: the next one, the end, or more bytes; `drain` when the socket may send again. */
  private landed(): void {
    if (this.state !== 'sending') return;
    this.state = 'open';
    if (this.heldBytes >= this.partSize) this.sendPart();
    else if (this.ended) this.finish();
    // sendPart/finish moved the state on (or a failure did).
    const now = this.state as WriterState;
    if (this.owed && now !== 'failed' && !(now === 'sending' && this.heldBytes >= this.partSize)) {
      this.owed = false;
      this.drain();
    }
  }

  /** From `open`, ended: the whole file in one PutObject, or the last part and the completion. */
  private finish(): void {
    this.state = 'ending';
    const body = this.take();
    this.fly(async () => {
      if (this.uploadId === undefined) {
        this.etag = await this.io.put(this.key, body, this.type);
        return;
      }
      if (body.length > 0) {
        const number = this.parts.length + 1;
        this.parts.push({ ETag: await this.io.uploadPart(this.key, this.uploadId, number, body), PartNumber: number });
      }
      this.etag = await this.io.completeMultipart(this.key, this.uploadId, this.parts);
      // Complete: nothing to abort any more (the staging deletes the object if it is given up).
      this.uploadId = undefined;
    }, () => {
      if (this.state !== 'ending') return;
      this.state = 'done';
      this.mtimeMs = Date.now();
      this.resolveDone(this.bytes);
    });
  }

  /** Runs one S3 call; `then` when it lands while nothing failed meanwhile. */
  private fly(call: () => Promise<void>, then: () => void): void {
    const flight = call();
    this.flight = flight.catch(noop);
    flight.then(then, (err: unknown) => this.fail(err as Error));
  }

  /** Gives up: once the call on its way landed, the multipart upload is aborted and `done` rejects with the first failure. */
  private fail(err: Error): void {
    if (this.state === 'done' || this.state === 'failed') return;
    this.state = 'failed';
    this.failure = err;
    this.held = [];
    this.heldBytes = 0;
    void this.flight.then(async () => {
      const id = this.uploadId;
      this.uploadId = undefined;
      if (id !== undefined) {
        await this.io.abortMultipart(this.key, id).catch((e: unknown) =>
          this.warn(`wharf: could not abort an S3 multipart upload (${String(e)}): the orphan sweep or the bucket's lifecycle rule removes it`));
      }
      this.rejectDone(this.failure!);
    });
  }
}
