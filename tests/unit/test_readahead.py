from artifactfs.readahead import SequentialDetector

KIB = 1024


def test_sequential_reads_grow_the_window_up_to_the_limit():
    d = SequentialDetector(max_blocks=8)
    windows = [d.observe(off, 128 * KIB) for off in range(0, 20 * 128 * KIB, 128 * KIB)]
    assert windows[:5] == [1, 2, 4, 8, 8]
    assert max(windows) == 8


def test_random_reads_get_no_read_ahead():
    d = SequentialDetector(max_blocks=8)
    offsets = [700 << 20, 3 << 20, 900 << 20, 50 << 20, 400 << 20]
    assert [d.observe(off, 4 * KIB) for off in offsets] == [0, 0, 0, 0, 0]


def test_a_jump_resets_the_window():
    d = SequentialDetector(max_blocks=8)
    for off in range(0, 8 * 128 * KIB, 128 * KIB):
        d.observe(off, 128 * KIB)
    assert d.observe(500 << 20, 128 * KIB) == 0
    assert d.observe((500 << 20) + 128 * KIB, 128 * KIB) == 1


def test_slightly_out_of_order_kernel_reads_still_count_as_sequential():
    d = SequentialDetector(max_blocks=8)
    d.observe(0, 128 * KIB)
    assert d.observe(256 * KIB, 128 * KIB) > 0  # one request overtook another
    assert d.observe(128 * KIB, 128 * KIB) > 0


def test_zero_window_disables():
    d = SequentialDetector(max_blocks=0)
    assert d.observe(0, 128 * KIB) == 0
    assert d.observe(128 * KIB, 128 * KIB) == 0
