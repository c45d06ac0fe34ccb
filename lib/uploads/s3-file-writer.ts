// One staged file on its way into S3 (`Staging.file` of s3-staging.ts), written straight to its final
// key: a file smaller than a part is one PutObject at its end; a larger one a multipart upload, up
// to `inFlight` parts on their way while the next one fills. So a file holds at most `inFlight + 1`
// parts in memory, and `write` says to wait (backpressure from S3 to the socket) while that many
// are held.
import { contentTypeFor } from '../common/mime.js';
import type { S3Io } from './s3-client.js';
import type { StagedFile } from './storage.js';

/**
 * Where a writer is:
 *
 *   open: taking bytes; each full part is sent as soon as fewer than `inFlight` are on their way
 *   open ──end, nothing on its way──▶ ending: the single PutObject, or the last part and
 *         CompleteMultipartUpload ──▶ done
 *   open | ending ──destroy or failure──▶ failed, once every call on its way landed and the
 *         multipart upload was aborted
 */
type WriterState = 'open' | 'ending' | 'done' | 'failed';

function noop(): void {}

/** How a file is cut into parts. */
export interface PartPlan {
  /** Bytes of one part (the last may be smaller). */
  size: number;
  /** Parts on their way at once. */
  inFlight: number;
}

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
  private parts = 0;
  private uploadId: Promise<string> | undefined;
  private readonly sent: Array<{ ETag: string; PartNumber: number }> = [];
  /** The S3 calls on their way (parts, the put, the completion): a failure waits for them to land. */
  private readonly flying = new Set<Promise<unknown>>();
  private failure: Error | undefined;
  private resolveDone!: (size: number) => void;
  private rejectDone!: (err: Error) => void;

  constructor(
    private readonly io: S3Io,
    readonly key: string,
    rel: string,
    private readonly plan: PartPlan,
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
    if (this.ended || this.state !== 'open') return true;
    this.held.push(chunk);
    this.heldBytes += chunk.length;
    this.bytes += chunk.length;
    if (this.heldBytes < this.plan.size) return true;
    if (this.flying.size < this.plan.inFlight) this.sendPart();
    if (this.heldBytes < this.plan.size) return true;
    this.owed = true;
    return false;
  }

  end(): void {
    if (this.ended || this.state !== 'open') return;
    this.ended = true;
    if (this.flying.size === 0) this.finish();
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

  /** The next part on its way (the multipart upload created first, once). */
  private sendPart(): void {
    const body = this.take();
    const number = ++this.parts;
    this.fly(async () => {
      const id = await (this.uploadId ??= this.io.createMultipart(this.key, this.type));
      this.sent.push({ ETag: await this.io.uploadPart(this.key, id, number, body), PartNumber: number });
    }, () => this.landed());
  }

  /** A part landed: the next one, the end, and `drain` when the socket may send again. */
  private landed(): void {
    if (this.state !== 'open') return;
    if (this.heldBytes >= this.plan.size) this.sendPart();
    else if (this.ended && this.flying.size === 0) this.finish();
    if (this.owed && this.heldBytes < this.plan.size) {
      this.owed = false;
      this.drain();
    }
  }

  /** Ended, nothing on its way: the whole file in one PutObject, or the last part and the completion. */
  private finish(): void {
    this.state = 'ending';
    const body = this.take();
    this.fly(async () => {
      if (this.uploadId === undefined) {
        this.etag = await this.io.put(this.key, body, this.type);
        return;
      }
      const id = await this.uploadId;
      if (body.length > 0) {
        const number = ++this.parts;
        this.sent.push({ ETag: await this.io.uploadPart(this.key, id, number, body), PartNumber: number });
      }
      this.etag = await this.io.completeMultipart(this.key, id, this.sent.sort((a, b) => a.PartNumber - b.PartNumber));
      // Complete: nothing to abort any more (the staging deletes the object if it is given up).
      this.uploadId = undefined;
    }, () => {
      if (this.state !== 'ending') return;
      this.state = 'done';
      this.mtimeMs = Date.now();
      this.resolveDone(this.bytes);
    });
  }

  /** Runs one S3 call; `then` when it lands, its failure the writer's. */
  private fly(call: () => Promise<void>, then: () => void): void {
    const flight = call();
    const tracked = flight.then(noop, noop).finally(() => this.flying.delete(tracked));
    this.flying.add(tracked);
    flight.then(() => {
      this.flying.delete(tracked);
      then();
    }, (err: unknown) => {
      this.flying.delete(tracked);
      this.fail(err as Error);
    });
  }

  /** Gives up: once every call on its way landed, the multipart upload is aborted and `done` rejects with the first failure. */
  private fail(err: Error): void {
    if (this.state === 'done' || this.state === 'failed') return;
    this.state = 'failed';
    this.failure = err;
    this.held = [];
    this.heldBytes = 0;
    void Promise.all([...this.flying]).then(async () => {
      const id = await this.uploadId?.catch(() => undefined);
      this.uploadId = undefined;
      if (id !== undefined) {
        await this.io.abortMultipart(this.key, id).catch((e: unknown) =>
          this.warn(`wharf: could not abort an S3 multipart upload (${String(e)}): the orphan sweep or the bucket's lifecycle rule removes it`));
      }
      this.rejectDone(this.failure!);
    });
  }
}
