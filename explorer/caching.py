"""How many entries the per-image caches of the explorer keep (``explorer.views``, ``explorer.encodings``)."""

# The per-image caches hold a class: 30 students, each with two models and up to three images in view (the one
# shown, the one before it, another page's) need 180 entries. At 32, the students' image changes evicted each
# other's window grids and pools within the ten seconds between two K changes, and each K change computed them again
# (docs/benchmarks.md, "Night of 2026-12-03: the class's caches"). Full, they hold about 230 MB: per entry, the
# window grid 266 kB, the pool 241 kB, the fixed figure 183 kB, the posterior view 133 kB, the resampled images
# 101 kB, q_IW at one K 66 kB.
CLASS_ENTRIES = 192
PER_K_ENTRIES = 4 * CLASS_ENTRIES  # the views per image and K: a student moves K across its range
