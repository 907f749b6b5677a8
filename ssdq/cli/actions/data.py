"""What ``ssdq data`` does; its flags are ``cli/commands/data.py``'s."""
from ssdq.data import synthetic
from ssdq.data.coco import download_coco
from ssdq.errors import SsdqError


def run(args, context):
    if args.data_command == "synthetic":
        splits = {"train": args.train, "dev": args.dev, "val": args.val}
        if any(n < 1 for n in splits.values()):
            raise SsdqError("each split needs at least one image")
        paths = synthetic.ensure_synthetic(args.root, splits, seed=args.seed,
                                           progress=context.progress)
        for split, path in paths.items():
            print("%s: %s" % (split, path))
    else:
        print("COCO val2017 ready in %s" % download_coco(args.root, base_url=args.base_url,
                                                        progress=context.progress))
