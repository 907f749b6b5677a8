"""What ``ssdq convert`` does; its flags are ``cli/commands/convert.py``'s."""
from ssdq.model.convert import convert


def run(args, context):
    print("wrote %s" % convert(args.out, model=args.model, params_file=args.params))
