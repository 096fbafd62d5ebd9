"""Ablation studies: a grid of config overrides x seeds, run through the ordinary CLI
(`python -m vatt.main`), resumable, summarised as mean and standard deviation over seeds.

  python -m vatt.ablation --config=pretrain:tiny --workdir=/tmp/abl_cka \
      --grid=loss.cka_weight=0,0.01,0.1,1 --seeds=0,1,2 --eval=linear_probe:synthetic

See vatt/ablation/cli.py for every flag, the README's results section for the studies run
with it.
"""
