"""python -m vatt.bench [--suite=cpu|gpu] [--configs=tiny,bbs,mbs] [--data] ..."""

from vatt.bench.cli import main

if __name__ == "__main__":
    main()
