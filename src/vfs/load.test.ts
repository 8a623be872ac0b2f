// arbor mounted and driven by fio (crc32c-verified, sequential + random, several jobs) and stress-ng's filesystem class.
// Small sizes: fio and stress-ng together stay well under three minutes. load.long.test.ts runs the same at scale.
import { loadSuite } from './testing/load-suite.js';

loadSuite('arbor under fio and stress-ng', {
  fio: [
    { name: 'seq', rw: 'write', bs: '1M', size: '32m', numjobs: 4, extra: ['--end_fsync=1'] },
    { name: 'rand', rw: 'randwrite', bs: '4k', size: '4m', numjobs: 4, extra: ['--fsync=64'] },
    {
      name: 'mixed',
      rw: 'randrw',
      bs: '4k',
      size: '4m',
      numjobs: 2,
      extra: ['--bsrange=512-64k', '--rwmixread=30'],
    },
    { name: 'append', rw: 'write', bs: '7k', size: '8m', numjobs: 2, extra: ['--file_append=1'] },
    { name: 'mmap', rw: 'randwrite', bs: '4k', size: '4m', numjobs: 2, ioengine: 'mmap' },
  ],
  stressSeconds: 5,
  stressRounds: 1,
});
