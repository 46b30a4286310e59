# Stand-in image recipe (tests/layer): an image with the layer's IMAGE_CLASSES.
LICENSE = "MIT"
inherit image
