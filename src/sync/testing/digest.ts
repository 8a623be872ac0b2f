// Test helper: a comparable summary of a replica's visible tree (path, kind, mode, link count, content hash).
import { createHash } from 'node:crypto';
import type { Workspace } from '../../cli/workspace.js';
import { Arbor } from '../../index.js';

/** One sorted line per visible path; two replicas that converged give equal arrays. */
export async function treeDigest(ws: Workspace): Promise<string[]> {
  const a = new Arbor(ws.tree);
  const out: string[] = [];
  for (const [path] of ws.tree.snapshot()) {
    const s = await a.lstat(path);
    let d = `${path} ${s.kind} ${s.mode.toString(8)} n${s.nlink}`;
    if (s.kind === 'file')
      d += ` ${createHash('sha256')
        .update(await a.readFile(path))
        .digest('hex')
        .slice(0, 12)}`;
    out.push(d);
  }
  return out.sort();
}
