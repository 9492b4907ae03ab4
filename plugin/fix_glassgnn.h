/* -*- c++ -*- ----------------------------------------------------------
   fix glassgnn: per-atom dynamical propensity predicted on the fly by an
   exported glassmd model (SE(3)-equivariant graph network).

   The model runs in Python (glassmd.runtime) through a Cython bridge.  On
   every rank the graph holds the local atoms and the ghosts within the
   model cutoff; after each message-passing layer the ghosts' hidden
   features are refreshed from their owners by forward communication, so
   the result does not depend on the number of ranks and the ghost shell
   only needs to cover one cutoff (plus skin), whatever the depth.
------------------------------------------------------------------------- */

#ifndef LMP_FIX_GLASSGNN_H
#define LMP_FIX_GLASSGNN_H

#include "fix.h"

#include <string>
#include <unordered_map>
#include <vector>

namespace LAMMPS_NS {

class FixGlassGNN : public Fix {
 public:
  FixGlassGNN(class LAMMPS *, int, char **);
  ~FixGlassGNN() override;
  int setmask() override;
  void init() override;
  void init_list(int, class NeighList *) override;
  void setup(int) override;
  void end_of_step() override;

  double compute_scalar() override;
  double compute_vector(int) override;

  void write_restart(FILE *) override;
  void restart(char *) override;

  void grow_arrays(int) override;
  void copy_arrays(int, int, int) override;
  void set_arrays(int) override;
  int pack_exchange(int, double *) override;
  int unpack_exchange(int, double *) override;
  int pack_forward_comm(int, int *, double *, int, int *) override;
  void unpack_forward_comm(int, int, double *) override;

  double memory_usage() override;

 private:
  int handle;    // evaluator handle in the Python bridge
  std::string model_file;
  std::string device;
  double model_cutoff;
  int num_layers, feature_dim, num_model_types, num_model_outputs;
  std::vector<std::string> model_type_names, model_output_names;

  std::vector<int> type_map;    // LAMMPS type -> model type, -1 = left out (NULL)
  std::vector<int> columns;     // model outputs stored, in order
  int nvalues;                  // columns.size()
  double *values_vector;        // per-atom storage when nvalues == 1
  double **values_array;        // per-atom storage when nvalues > 1

  std::string property_name;    // fix property/atom to mirror values into ("" = none)
  int property_index, property_cols;

  class NeighList *list;

  // per-evaluation work space
  double **features;    // atom-indexed hidden features, forward-communicated
  int maxfeatures;
  std::vector<int> node_atom;     // node -> atom index (locals are nodes 0..nlocal-1)
  std::vector<int> atom_node;     // atom -> node or -1
  std::unordered_map<tagint, int> own_atom;  // tag -> index of this rank's own atom
  std::vector<int> node_types, senders, receivers;
  std::vector<double> edge_vec, node_features, readout_values;

  bigint last_evaluation;    // step of the last evaluation, -1 = never
  bool restored;             // global state came from a restart file
  bigint restored_step;
  int restored_nvalues;

  double &value(int i, int m) { return nvalues == 1 ? values_vector[i] : values_array[i][m]; }
  void parse_keywords(int, char **, std::vector<std::string> &, std::string &);
  void map_types(const std::vector<std::string> &);
  void select_outputs(const std::string &);
  void find_property();
  void evaluate();
  void check_positions();
  void evaluate_layer_by_layer(bool active, int nnodes);
  void copy_from_property();
  void copy_to_property();
  void check(int, const char *);
  int local_rank();
};

}    // namespace LAMMPS_NS

#endif
