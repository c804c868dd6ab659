"""Release building, one module per thing built (the `experiments/release_*` mains and `make
release*` call them):

  al_model        the AL model's release from a trained run (v2, v3.1), and its recorded age prior
  al_choice       how the AL model's run, crops and local weight are chosen on validation views
  two_networks    the AL model and face-api's network, their mean and a calibrated interval (v4)
  three_networks  those two and HSE's faceres-deep, a rule and an interval chosen leave one
                  population out (v5, the default model)
"""
