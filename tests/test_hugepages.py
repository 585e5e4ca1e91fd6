"""The heap goes on huge pages where Linux offers them, and only the dense
ranges of anonymous memory do."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from deterrence.hugepages import HUGE_PAGE, _dense_anonymous_ranges

THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def test_only_dense_private_anonymous_ranges_are_chosen_aligned_to_huge_pages() -> None:
    mib = 1 << 20
    smaps = textwrap.dedent(
        f"""\
        {0x10_0000:x}-{0x90_0000:x} rw-p 00000000 00:00 0          [heap]
        Size:               8192 kB
        Rss:                7168 kB
        {0x100_0000:x}-{0x180_0000:x} rw-p 00000000 00:00 0
        Size:               8192 kB
        Rss:                 512 kB
        {0x200_0000:x}-{0x280_0000:x} r--p 00000000 08:01 1234       /usr/lib/libc.so.6
        Size:               8192 kB
        Rss:                8192 kB
        {0x300_0000:x}-{0x360_0000:x} rw-p 00000000 00:00 0
        Size:               6144 kB
        Rss:                6144 kB
        {0x400_0000:x}-{0x410_0000:x} rw-p 00000000 00:00 0
        Size:               1024 kB
        Rss:                1024 kB
        {0x500_0000:x}-{0x580_0000:x} rw-p 00000000 00:00 0          [stack]
        Size:               8192 kB
        Rss:                8192 kB
        """
    )
    ranges = list(_dense_anonymous_ranges(smaps))
    # The heap, from its first huge-page boundary (2 MiB) to its last (8 MiB),
    # 6 MiB of it resident out of 7; the fully resident 6 MiB mapping. Not the
    # sparse one, the file, the 1 MiB one (no whole huge page) or the stack.
    assert ranges == [(2 * mib, 6 * mib), (0x300_0000, 6 * mib)]
    assert all(start % HUGE_PAGE == 0 and length % HUGE_PAGE == 0 for start, length in ranges)


def test_a_heap_of_small_objects_goes_on_huge_pages() -> None:
    """In a fresh interpreter: 200 MiB of small objects, like a large matcher's,
    end up counted in AnonHugePages. This machine's kernel (6.1+, huge pages
    ``always`` or ``madvise``) is what CI runs on: fail loudly elsewhere."""
    mode = THP.read_text()
    assert "[never]" not in mode, f"transparent huge pages are off here: {mode}"
    script = textwrap.dedent(
        """
        from pathlib import Path
        from deterrence.hugepages import back_heap_with_huge_pages

        def huge_kib():
            for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
                if line.startswith("AnonHugePages:"):
                    return int(line.split()[1])

        words = {str(i) * 3: (i, str(i)) for i in range(1_500_000)}
        before = huge_kib()
        collapsed = back_heap_with_huge_pages()
        print(before, huge_kib(), collapsed)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    before, after, collapsed = (int(x) for x in result.stdout.split())
    assert collapsed >= 100 << 20, result.stdout
    assert after - before >= 100 << 10, result.stdout  # KiB
