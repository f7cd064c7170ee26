"""Train a tied-weight autoencoder (tf1_tied_ae) from the command line.

    python train.py                                   # tied, on MNIST if found, else 8x8 digits
    python train.py --dataset mnist --mode tied-untied --epochs 20
    python train.py --compare                         # the question's code vs every mode
    python train.py --out checkpoints/run --resume    # continue a run
    python train.py --help                            # every flag, with its default

The flags are AEConfig's and RunConfig's fields (tae_config); tae_cli turns them into configs and
a run folder, tf1_tied_ae.build makes the graph, and tae_runner trains its stages.
"""
from tae_cli import console

if __name__ == "__main__":
    console()
