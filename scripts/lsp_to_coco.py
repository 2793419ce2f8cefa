"""LSP or LSPET (official joints.mat + images/) -> a COCO keypoints JSON file.

    python -m scripts.lsp_to_coco DATA/lspet --output runs/lspet_coco.json
    python train.py --dataset coco --annotations runs/lspet_coco.json --images DATA/lspet/images

The file holds one image and one person per annotated image, with the LSP reader's
conventions already applied, so the COCO reader gives back the same examples as the LSP
/ LSPET reader (tests/test_coco.py checks it on real LSPET images):

* keypoints: the reader's 0-based pixels; v = 2 visible, 1 occluded (LSP's flag 1), and
  0 with (0, 0) for joints not annotated (LSPET's flag 0);
* bbox: the box of the annotated joints, [x0, y0, x1 - x0, y1 - y0], so that the COCO
  reader's crop (box centre, longer side x 1.25) is the LSP reader's;
* the category: "person" with LSP-14's joint names (r_ankle ... head_top), its limbs
  (1-based) and hence, by the naming rule, its flip pairs;
* image ids: the number in the file name (im00042.jpg -> 42), ``file_name`` as in images/.

It also makes a small COCO-format set out of data you already have, e.g. to try
``--dataset coco`` or fine-tuning before annotating your own.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file, not only with -m


def lsp_to_coco(records: list[dict], skeleton) -> dict:
    """COCO keypoints document for reader records (one person per image)."""
    from mssh_keras.data.records import VISIBLE, image_header

    images, annotations = [], []
    for r in records:
        number = int(re.search(r"(\d+)", r["image_id"]).group(1))
        w, h, _ = image_header(r["path"])
        flags = [int(f) for f in r["flags"]]
        pts = r["joints"][[f > 0 for f in flags]]
        x0, y0 = (float(v) for v in pts.min(0))
        x1, y1 = (float(v) for v in pts.max(0))
        kp = []
        for (x, y), f in zip(r["joints"].tolist(), flags):
            kp += [float(x), float(y), 2 if f == VISIBLE else f] if f else [0, 0, 0]
        images.append({"id": number, "file_name": r["image_id"], "width": w, "height": h})
        annotations.append({"id": number, "image_id": number, "category_id": 1,
                            "keypoints": kp, "num_keypoints": sum(f > 0 for f in flags),
                            "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0),
                            "iscrowd": 0})
    category = {"id": 1, "name": "person", "supercategory": "person",
                "keypoints": list(skeleton.joints),
                "skeleton": [[a + 1, b + 1] for a, b in skeleton.limbs]}
    return {"info": {"description": f"converted from {skeleton.name} by scripts/lsp_to_coco.py"},
            "images": images, "annotations": annotations, "categories": [category]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", help="the LSP or LSPET folder (joints.mat and images/)")
    ap.add_argument("--dataset", choices=["lspet", "lsp"], default="lspet")
    ap.add_argument("--split", default="all", help="train, val (LSPET), test (LSP) or all")
    ap.add_argument("--limit", type=int, help="only the first N images")
    ap.add_argument("--output", required=True, help="the COCO JSON file to write")
    args = ap.parse_args(argv)

    from mssh_keras.data.lsp import read_lsp
    from mssh_keras.data.lspet import read_lspet
    from mssh_keras.data.records import DatasetFilesError
    from mssh_keras.skeleton import LSP14

    try:
        read = read_lspet if args.dataset == "lspet" else read_lsp
        records = read(args.root, args.split)
    except (DatasetFilesError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    records = [r for r in records if (r["flags"] > 0).any()][:args.limit]
    doc = lsp_to_coco(records, LSP14)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc))
    print(f"{len(records)} people from {args.root} -> {out}; train with:\n  python train.py "
          f"--dataset coco --annotations {out} --images {Path(args.root) / 'images'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
