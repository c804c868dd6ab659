"""The model room's option lists, in a module that imports nothing (flags are built from them
before TensorFlow is loaded). Defined here only; `age_model` uses them from here."""

# Backbone layouts of an age model: the paper's ResNet / RoR (torch), dlib's age network
# (`resnet.build_dlib_backbone`) and face-api's TinyXception (`xception`).
LAYOUTS = ("torch", "dlib", "faceapi")
