"""glassmd: a learned structural order parameter for glassy liquids.

The dynamical propensity of every particle, predicted from the static structure by the
SE(3)-equivariant graph network of Pezzicoli, Charpiat and Landes, trained from LAMMPS dump files
and evaluated on the fly inside LAMMPS by ``fix glassgnn``.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
