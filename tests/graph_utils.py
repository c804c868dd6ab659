"""Reading a functional model's wiring: which layers feed which."""


def inbound_layer_names(model, layer_name):
    """Names of the layers whose outputs are inputs of `layer_name` (first call)."""
    node = model.get_layer(layer_name)._inbound_nodes[0]
    return [t._keras_history.operation.name for t in node.input_tensors]
