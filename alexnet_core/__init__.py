"""AlexNet Lab core: the AlexNet family, datasets, anatomy, training and runs.

Plain PyTorch and pandas; never imports streamlit. Every page, the CLI and the
tests call the same functions. The modules, lower ones first (imports point
down; none imports another in a circle):

    paths, device       folders; device choice, CPU threads, seeding
    runfiles            torch-free run-folder primitives: atomic JSON, locks, status, process checks
    runlogs             torch-free: a run's metrics lines and per-epoch predictions files
    variants            the AlexNet family as data: one spec per named variant
    imagefiles          image files into uint8 tensors (torchvision formats, photos, folders)
    datafiles           where a torchvision dataset's files are: layout, system archives, checksums
    datasets            the dataset registry and loaders, cached
    batches             batched augmentation, resize and normalisation on the device
    config              TrainConfig: each field declared once (Setting); validation
    recipes             each reference setup as written and ours: settings, differences, the posts' figures
    builders            what a config builds: dataset, model, optimizer, schedule, split
    evaluation          a model on a split, under no_grad
    checkpoints         state_dicts + config, written atomically, read weights_only
    training            the loop, the weights a run starts from, the epoch estimate
    runs                the run store: launch, queue, stop, resume, read
    anatomy, predict    layer tables and shape traces; predictions, confusion, uploads
    insight             conv1's filters per epoch, nearest training images, Grad-CAM, test-set map
    __main__            the CLI: python -m alexnet_core train|eval|runs|summary ...
"""

__version__ = "0.1.0"
