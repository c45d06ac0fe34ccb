// Load (issue 8 §2), the short version: 200 concurrent clients for 10 s against a wharf server in a
// child process — uploads of 1 KiB–10 MiB, whole downloads and ranges of uploads and of a mapped
// directory (every byte checked), image-stream viewers, deletes — then: no failed request, the
// server's descriptors back to what they were, no temp files left, exactly the uploads not deleted
// on disk with their sizes, and RSS back near its baseline. `npm run stress` runs it for 60 s.
//
// "Near" the baseline: RSS within 64 MiB of a warmed-up server's after a full GC, and JS heap +
// external within 16 MiB of the cold start (test/helpers/load-scenario.ts says why).
// Requests/s and p99 are printed, never asserted (a shared box).
import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JS_SLACK, RSS_SLACK, runLoadScenario } from './helpers/load-scenario.js';
import { defer } from './helpers/defer.js';

// Twice: as this machine runs it (small file-system calls on the event loop while they are cheap),
// and with every call forced through the thread pool, as on a slow or network disk — a path the
// first run would never take here, and the one that once livelocked under concurrent uploads.
for (const syncIo of ['auto', 'off'] as const) {
  test(`load (syncIo ${syncIo}): 200 clients for 10 s — uploads, downloads, ranges, stream viewers`, async (t) => {
    const root = await mkdtemp(join(tmpdir(), 'wharf-load-'));
    defer(t, () => rm(root, { recursive: true, force: true }));
    const r = await runLoadScenario({ root, seconds: 10, clients: 200, syncIo });
    console.log(r.summary);

    assert.deepEqual(r.report.failures, [], `${r.report.failed} failed requests`);
    assert.equal(r.report.failed, 0);
    for (const op of ['upload', 'download', 'download-static', 'range', 'view', 'publish']) {
      assert.ok((r.report.ops[op]?.count ?? 0) > 0, `some ${op} requests ran`);
    }
    assert.equal(r.fdsAfter, r.fdsBefore, `descriptors before ${r.fdsBefore}, after ${r.fdsAfter}:\n${r.fdDiff}`);
    assert.deepEqual(r.tempLeft, [], 'nothing left in the temp area');
    assert.deepEqual(r.diskProblems, [], 'the data directory holds exactly the uploads not deleted');
    assert.ok(r.memAfter.rss - r.memWarm.rss < RSS_SLACK, `RSS ${r.memWarm.rss} warmed up → ${r.memAfter.rss} after (after GC)`);
    const js = (m: typeof r.memCold): number => m.heapUsed + m.external;
    assert.ok(js(r.memAfter) - js(r.memCold) < JS_SLACK, `JS heap+external ${js(r.memCold)} → ${js(r.memAfter)} (after GC)`);
    assert.equal(r.serverErrors, '', 'the server warned about nothing');
  });
}
