// The load suite at scale (ARBOR_LONG=1): bigger fio files, more jobs, O_DIRECT, longer stress-ng rounds.
import { loadSuite } from './testing/load-suite.js';

loadSuite('arbor under fio and stress-ng (long)', {
  fio: [
    { name: 'seq', rw: 'write', bs: '1M', size: '256m', numjobs: 4, extra: ['--end_fsync=1'] },
    // Small random writes run at ~1 MB/s on arbor today: sizes kept so the run stays within minutes.
    { name: 'rand', rw: 'randwrite', bs: '4k', size: '16m', numjobs: 4, extra: ['--fsync=256'] },
    {
      name: 'mixed',
      rw: 'randrw',
      bs: '4k',
      size: '16m',
      numjobs: 4,
      extra: ['--bsrange=512-256k', '--rwmixread=50'],
    },
    { name: 'append', rw: 'write', bs: '7k', size: '32m', numjobs: 4, extra: ['--file_append=1'] },
    { name: 'mmap', rw: 'randwrite', bs: '4k', size: '16m', numjobs: 4, ioengine: 'mmap' },
    { name: 'direct', rw: 'randwrite', bs: '64k', size: '32m', numjobs: 2, extra: ['--direct=1'] },
  ],
  stressSeconds: 30,
  stressRounds: 2,
});
