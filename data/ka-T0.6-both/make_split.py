"""The split of the second training stage: each reference set split 75 / 15 / 10 with seed 0.

The first set's part is exactly the split stage 1 drew (glassmd train names a lone folder's
configurations by file name, so its ids are mapped onto the two-folder ids here), so no configuration
stage 1 held out for validation or test is trained on in stage 2.
"""

import sys
from pathlib import Path

from glassmd.train.dataset import (
    SPLIT_NAMES,
    configuration_id,
    configuration_names,
    find_dump_files,
    make_split,
    write_split,
)

FRACTIONS = {"train": 0.75, "validation": 0.15, "test": 0.10}
FOLDERS = [Path("data/ka-n1000-T0.6/labelled"), Path("data/ka-n1000-T0.6-s2/labelled")]

files = find_dump_files(FOLDERS)
names = dict(zip(files, configuration_names(files)))
combined = {name: [] for name in SPLIT_NAMES}
for folder in FOLDERS:
    mine = [f for f in files if f.parent == folder]
    # one configuration (frame 0) per file
    bare = make_split([configuration_id(f.name, 0) for f in mine], FRACTIONS, seed=0)
    to_full = {configuration_id(f.name, 0): configuration_id(names[f], 0) for f in mine}
    for part in SPLIT_NAMES:
        combined[part] += [to_full[cid] for cid in bare[part]]
write_split(sys.argv[1], combined)
print({part: len(ids) for part, ids in combined.items()})
