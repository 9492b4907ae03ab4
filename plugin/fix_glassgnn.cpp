/* ----------------------------------------------------------------------
   fix glassgnn: learned structural order parameter (dynamical propensity)
   evaluated on the fly by an exported glassmd model.  See fix_glassgnn.h
   and docs/fix_glassgnn.rst.
------------------------------------------------------------------------- */

// Python.h first: it may change standard headers' feature macros.
#include <Python.h>

#include "fix_glassgnn.h"

#include "atom.h"
#include "comm.h"
#include "error.h"
#include "force.h"
#include "memory.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "pair.h"
#include "update.h"
#include "utils.h"

#include "bridge_api.h"
#include "neigh_request_api.h"

#include <cmath>
#include <cstdlib>
#include <cstring>

using namespace LAMMPS_NS;
using namespace FixConst;

#ifndef GLASSMD_PYTHON_EXECUTABLE
#define GLASSMD_PYTHON_EXECUTABLE "python3"
#endif

namespace {

const char *const KEYWORDS[] = {"types", "output", "device", "property"};

bool is_keyword(const char *word)
{
  for (const char *k : KEYWORDS)
    if (strcmp(word, k) == 0) return true;
  return false;
}

// auto, cpu, cuda or cuda:K.  Checked by hand: utils::strmatch() has no groups,
// so "^cuda(:[0-9]+)?$" matched nothing and every cuda device was rejected.
bool is_device(const std::string &word)
{
  if (word == "auto" || word == "cpu" || word == "cuda") return true;
  if (word.compare(0, 5, "cuda:") != 0 || word.size() == 5) return false;
  for (size_t k = 5; k < word.size(); k++)
    if (word[k] < '0' || word[k] > '9') return false;
  return true;
}

// Holds the GIL for one scope, whether Python was started by this plugin
// (GIL released after start-up) or by a program driving LAMMPS from Python.
class GIL {
 public:
  GIL() : state(PyGILState_Ensure()) {}
  ~GIL() { PyGILState_Release(state); }
  GIL(const GIL &) = delete;
  GIL &operator=(const GIL &) = delete;

 private:
  PyGILState_STATE state;
};

// "Type: message" of the pending Python exception, which is cleared.
std::string fetch_python_error()
{
  PyObject *type = nullptr, *value = nullptr, *traceback = nullptr;
  PyErr_Fetch(&type, &value, &traceback);
  PyErr_NormalizeException(&type, &value, &traceback);
  std::string text = "unknown Python error";
  if (type) {
    PyObject *name = PyObject_GetAttrString(type, "__name__");
    if (name && PyUnicode_Check(name)) text = PyUnicode_AsUTF8(name);
    Py_XDECREF(name);
  }
  if (value) {
    PyObject *str = PyObject_Str(value);
    if (str && PyUnicode_Check(str)) {
      const char *message = PyUnicode_AsUTF8(str);
      if (message && *message) text += std::string(": ") + message;
    }
    Py_XDECREF(str);
  }
  Py_XDECREF(type);
  Py_XDECREF(value);
  Py_XDECREF(traceback);
  PyErr_Clear();
  return text;
}

std::string python_executable()
{
  PyObject *exe = PySys_GetObject("executable");    // borrowed
  if (exe && PyUnicode_Check(exe)) return PyUnicode_AsUTF8(exe);
  return "unknown";
}

// Standalone lmp: start the interpreter of the environment glassmd was built
// in, so that its site-packages (torch, glassmd) are found, then release the
// GIL so every call below can take it the same way.  Python is never
// finalized: re-initializing breaks extension modules such as numpy.
std::string start_python()
{
  if (Py_IsInitialized()) return "";
  const char *python = getenv("GLASSMD_PYTHON");
  if (!python || !*python) python = GLASSMD_PYTHON_EXECUTABLE;

  PyConfig config;
  PyConfig_InitPythonConfig(&config);
  config.install_signal_handlers = 0;    // LAMMPS and MPI keep their own signal handling
  config.parse_argv = 0;
  PyStatus status = PyConfig_SetBytesString(&config, &config.program_name, python);
  if (!PyStatus_Exception(status)) {
    char *argv[] = {const_cast<char *>(python)};
    status = PyConfig_SetBytesArgv(&config, 1, argv);
  }
  if (!PyStatus_Exception(status)) status = Py_InitializeFromConfig(&config);
  PyConfig_Clear(&config);
  if (PyStatus_Exception(status))
    return fmt::format("could not start Python {}: {}", python,
                       status.err_msg ? status.err_msg : "unknown error");
  PyEval_SaveThread();
  return "";
}

// Import the Cython bridge once per process; "" on success.
std::string import_bridge()
{
  static bool imported = false;
  if (imported) return "";
  GIL gil;
  if (import_glassmd___glassgnn_bridge() != 0) {
    std::string why = fetch_python_error();
    return fmt::format("cannot import glassmd in the Python used by the plugin ({}): {}. Install "
                       "glassmd in that environment, or set GLASSMD_PYTHON to the python of an "
                       "environment that has it",
                       python_executable(), why);
  }
  imported = true;
  return "";
}

// The custom per-atom property named by the property keyword: its name without the optional
// d_ or d2_ prefix (atom->find_custom() and fix property/atom know it by the bare name).
std::string property_base(const std::string &name)
{
  if (utils::strmatch(name, "^d2_")) return name.substr(3);
  if (utils::strmatch(name, "^d_")) return name.substr(2);
  return name;
}

bool python_usable()
{
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsInitialized() && !Py_IsFinalizing();
#else
  return Py_IsInitialized() && !_Py_IsFinalizing();
#endif
}

}    // namespace

/* ---------------------------------------------------------------------- */

FixGlassGNN::FixGlassGNN(LAMMPS *lmp, int narg, char **arg) :
    Fix(lmp, narg, arg), handle(0), model_cutoff(0.0), num_layers(0), feature_dim(0),
    num_model_types(0), num_model_outputs(0), nvalues(0), values_vector(nullptr),
    values_array(nullptr), property_index(-1), property_cols(0), list(nullptr), features(nullptr),
    maxfeatures(0), last_evaluation(-1), restored(false), restored_step(-1), restored_nvalues(0)
{
  if (narg < 5) utils::missing_cmd_args(FLERR, "fix glassgnn", error);
  nevery = utils::inumeric(FLERR, arg[3], false, lmp);
  if (nevery < 1)
    error->all(FLERR, "Fix glassgnn: N must be a positive number of steps, got {}", arg[3]);
  model_file = arg[4];

  std::vector<std::string> type_names;
  std::string output = "all";
  device = "auto";
  parse_keywords(narg, arg, type_names, output);

  // start Python, import the bridge, load the model (same result on every rank)
  std::string failure = start_python();
  if (failure.empty()) failure = import_bridge();
  check(failure.empty() ? 0 : -1, failure.c_str());

  int rc;
  std::string message;
  int rank_on_node = local_rank();
  {
    GIL gil;
    rc = glassgnn_load(model_file.c_str(), device.c_str(), 0, rank_on_node, &handle);
    if (rc == 0)
      rc = glassgnn_query(handle, &model_cutoff, &num_layers, &feature_dim, &num_model_types,
                          &num_model_outputs);
    if (rc == 0) {
      for (int t = 0; t < num_model_types && rc == 0; t++) {
        const char *name = glassgnn_type_name(handle, t);
        if (name) model_type_names.emplace_back(name);
        else rc = -1;
      }
      for (int m = 0; m < num_model_outputs && rc == 0; m++) {
        const char *name = glassgnn_output_name(handle, m);
        if (name) model_output_names.emplace_back(name);
        else rc = -1;
      }
    }
    if (rc != 0) message = glassgnn_last_error();
  }
  // glassmd's model-file messages name the file themselves ("model file 'X' does not exist"); the prefix
  // is for the others (device, threads), which do not.
  const bool names_file = message.find(model_file) != std::string::npos;
  check(rc, names_file ? message.c_str()
                       : fmt::format("cannot use model file {}: {}", model_file, message).c_str());
  if (num_layers < 1 || feature_dim < 1 || num_model_outputs < 1 || model_cutoff <= 0.0)
    error->all(FLERR,
               "Fix glassgnn: model file {} reports {} layers, {} features, {} outputs, cutoff {}; "
               "export it again with `glassmd export`",
               model_file, num_layers, feature_dim, num_model_outputs, model_cutoff);

  map_types(type_names);
  select_outputs(output);

  peratom_flag = 1;
  size_peratom_cols = (nvalues == 1) ? 0 : nvalues;
  peratom_freq = 1;    // values always exist; between evaluations they are the last ones
  if (nvalues == 1) {
    scalar_flag = 1;
    extscalar = 0;
  } else {
    vector_flag = 1;
    size_vector = nvalues;
    extvector = 0;
  }
  global_freq = 1;
  restart_global = 1;
  comm_forward = feature_dim;
  maxexchange = nvalues;

  grow_arrays(atom->nmax);
  atom->add_callback(Atom::GROW);
  for (int i = 0; i < atom->nlocal; i++)
    for (int m = 0; m < nvalues; m++) value(i, m) = 0.0;

  if (!property_name.empty()) find_property();

  if (comm->me == 0) {
    std::string description;
    {
      GIL gil;
      const char *text = glassgnn_describe(handle);
      description = text ? text : model_file;
    }
    std::string mapping;
    for (int t = 1; t <= atom->ntypes; t++)
      mapping += fmt::format("{}{} -> {}", t > 1 ? ", " : "", t,
                             type_map[t] < 0 ? "NULL" : model_type_names[type_map[t]]);
    std::string stored;
    for (int m = 0; m < nvalues; m++)
      stored += fmt::format("{}{}", m ? " " : "", model_output_names[columns[m]]);
    utils::logmesg(lmp,
                   "fix glassgnn: model {}\n  atom types: {}\n  stores: {} (every {} steps)\n",
                   description, mapping, stored, nevery);
  }
}

/* ---------------------------------------------------------------------- */

FixGlassGNN::~FixGlassGNN()
{
  if (copymode) return;
  atom->delete_callback(id, Atom::GROW);
  memory->destroy(values_vector);
  memory->destroy(values_array);
  memory->destroy(features);
  if (handle > 0 && python_usable()) {
    GIL gil;
    glassgnn_release(handle);
  }
}

/* ---------------------------------------------------------------------- */

void FixGlassGNN::parse_keywords(int narg, char **arg, std::vector<std::string> &type_names,
                                 std::string &output)
{
  int iarg = 5;
  while (iarg < narg) {
    std::string keyword = arg[iarg];
    if (keyword == "types") {
      iarg++;
      type_names.clear();
      while (iarg < narg && !is_keyword(arg[iarg])) type_names.emplace_back(arg[iarg++]);
      if (type_names.empty())
        error->all(FLERR, "Fix glassgnn: types needs one model type name per atom type (1..{})",
                   atom->ntypes);
    } else if (keyword == "output" || keyword == "device" || keyword == "property") {
      if (iarg + 2 > narg) utils::missing_cmd_args(FLERR, "fix glassgnn " + keyword, error);
      std::string word = arg[iarg + 1];
      if (keyword == "output") {
        output = word;
      } else if (keyword == "property") {
        // only names that fix property/atom can define; d2_name[n] or i_name would be
        // looked up as names that can never exist
        const std::string base = property_base(word);
        if (utils::strmatch(word, "^i2?_") || base.empty() || !utils::is_id(base))
          error->all(FLERR,
                     "Fix glassgnn: property must name a floating-point per-atom property of fix "
                     "property/atom, as name, d_name or d2_name (letters, digits, underscores), "
                     "got {}",
                     word);
        property_name = word;
      } else {
        if (!is_device(word))
          error->all(FLERR,
                     "Fix glassgnn: device must be auto, cpu, cuda or cuda:K (K a GPU index), "
                     "got {}",
                     word);
        device = word;
      }
      iarg += 2;
    } else {
      error->all(FLERR,
                 "Fix glassgnn: unknown keyword {} (expected types, output, device or property)",
                 keyword);
    }
  }
}

/* ----------------------------------------------------------------------
   LAMMPS type -> model type index, as pair_coeff maps types to elements
------------------------------------------------------------------------- */

void FixGlassGNN::map_types(const std::vector<std::string> &type_names)
{
  const int ntypes = atom->ntypes;
  std::string known;
  for (const auto &name : model_type_names) known += (known.empty() ? "" : " ") + name;
  type_map.assign(ntypes + 1, -1);

  if (type_names.empty()) {
    if (ntypes > num_model_types)
      error->all(FLERR,
                 "Fix glassgnn: atom type {} is not covered: the model has {} particle type(s) "
                 "({}) and no types keyword maps the {} atom types; add `types` with one name per "
                 "atom type (NULL to leave a type out)",
                 num_model_types + 1, num_model_types, known, ntypes);
    for (int t = 1; t <= ntypes; t++) type_map[t] = t - 1;
    return;
  }
  if ((int) type_names.size() != ntypes)
    error->all(FLERR,
               "Fix glassgnn: types lists {} name(s) but there are {} atom types; give one model "
               "type name ({} or NULL) for each of the atom types 1..{}",
               type_names.size(), ntypes, known, ntypes);
  for (int t = 1; t <= ntypes; t++) {
    const std::string &name = type_names[t - 1];
    if (name == "NULL") continue;
    for (int k = 0; k < num_model_types; k++)
      if (model_type_names[k] == name) type_map[t] = k;
    if (type_map[t] < 0)
      error->all(FLERR,
                 "Fix glassgnn: types maps atom type {} to {}, which is not a particle type of "
                 "the model (it knows {})",
                 t, name, known);
  }
}

/* ---------------------------------------------------------------------- */

void FixGlassGNN::select_outputs(const std::string &output)
{
  columns.clear();
  if (output == "all") {
    for (int m = 0; m < num_model_outputs; m++) columns.push_back(m);
  } else {
    for (int m = 0; m < num_model_outputs; m++)
      if (model_output_names[m] == output) columns.push_back(m);
    if (columns.empty()) {
      std::string known;
      for (const auto &name : model_output_names) known += (known.empty() ? "" : " ") + name;
      error->all(FLERR, "Fix glassgnn: output {} is not an output of the model (it has: {}, or all)",
                 output, known);
    }
  }
  nvalues = (int) columns.size();
}

/* ----------------------------------------------------------------------
   the fix property/atom that mirrors the values (restart and data files)
------------------------------------------------------------------------- */

void FixGlassGNN::find_property()
{
  // One stored value goes to a vector (fix property/atom d_name), n values to an array with n
  // columns (fix property/atom d2_name n: the column count is a separate argument).
  const std::string name = property_base(property_name);
  auto definition = [this](const std::string &base) {
    return nvalues == 1 ? fmt::format("d_{}", base) : fmt::format("d2_{} {}", base, nvalues);
  };
  std::string stored;
  for (int m = 0; m < nvalues; m++)
    stored += fmt::format("{}{}", m ? " " : "", model_output_names[columns[m]]);

  int flag = 0, cols = 0;
  property_index = atom->find_custom(name.c_str(), flag, cols);
  if (property_index < 0)
    error->all(FLERR,
               "Fix glassgnn: property {} does not exist; define it before this fix with "
               "`fix ID all property/atom {}` (to hold {})",
               property_name, definition(name), stored);
  if (flag == 1 && cols == (nvalues == 1 ? 0 : nvalues)) {
    property_cols = cols;
    return;
  }

  // The name is taken by a property of another kind, which fix property/atom cannot redefine:
  // suggest a name still free.
  const std::string kind =
      fmt::format("{} per-atom {}", flag == 1 ? "a floating-point" : "an integer",
                  cols ? fmt::format("array with {} columns", cols) : std::string("vector"));
  std::string fresh = fmt::format("{}_{}", name, id);
  for (int k = 2; atom->find_custom(fresh.c_str(), flag, cols) >= 0; k++)
    fresh = fmt::format("{}_{}_{}", name, id, k);
  error->all(FLERR,
             "Fix glassgnn: property {} is {}, but this fix stores {} value(s) per atom ({}); "
             "define a new property before this fix with `fix ID all property/atom {}` and use "
             "`property {}{}` in this fix{}",
             property_name, kind, nvalues, stored, definition(fresh), nvalues == 1 ? "d_" : "d2_",
             fresh, nvalues > 1 ? ", or store one output with the output keyword" : "");
}

/* ---------------------------------------------------------------------- */

int FixGlassGNN::setmask()
{
  int mask = 0;
  mask |= END_OF_STEP;
  return mask;
}

/* ---------------------------------------------------------------------- */

void FixGlassGNN::init()
{
  if (!property_name.empty()) find_property();

  // Features of ghost atoms are refreshed after every layer, so one cutoff of
  // ghosts suffices; the neighbor list is reused between rebuilds, hence + skin.
  const double skin = neighbor->skin;
  const double needed = model_cutoff + skin;
  double cutghost = comm->cutghostuser;
  if (force->pair) cutghost = MAX(cutghost, force->pair->cutforce + skin);
  if (cutghost < needed)
    error->all(FLERR,
               "Fix glassgnn: the ghost atom cutoff {:.8g} is shorter than the model cutoff {:.8g} "
               "plus the neighbor skin {:.8g}; add `comm_modify cutoff {:.8g}` (or larger) to the "
               "input",
               cutghost, model_cutoff, skin, needed);

  // occasional full list at the model cutoff: built only on evaluation steps
  auto request = neighbor->add_request(this, NeighConst::REQ_FULL | NeighConst::REQ_OCCASIONAL);
  request->set_cutoff(needed);
}

/* ---------------------------------------------------------------------- */

void FixGlassGNN::init_list(int /*id*/, NeighList *ptr)
{
  list = ptr;
}

/* ----------------------------------------------------------------------
   evaluate on steps that are multiples of N, and when no values exist yet;
   after a restart with a property, take the saved values instead, as an
   uninterrupted run would still hold them
------------------------------------------------------------------------- */

void FixGlassGNN::setup(int /*vflag*/)
{
  const bool on_schedule = (update->ntimestep % nevery) == 0;
  if (last_evaluation < 0 && !on_schedule && restored && property_index >= 0 &&
      restored_nvalues == nvalues) {
    copy_from_property();
    last_evaluation = restored_step;
    return;
  }
  if (last_evaluation < 0 || on_schedule) evaluate();
}

/* ---------------------------------------------------------------------- */

void FixGlassGNN::end_of_step()
{
  evaluate();
}

/* ----------------------------------------------------------------------
   one model evaluation for the local atoms of this rank
------------------------------------------------------------------------- */

void FixGlassGNN::evaluate()
{
  check_positions();
  neighbor->build_one(list);

  const int nlocal = atom->nlocal;
  const int nall = nlocal + atom->nghost;
  double **x = atom->x;
  const int *type = atom->type;
  const int *mask = atom->mask;
  const double cutsq = model_cutoff * model_cutoff;

  // Nodes: all local atoms (identity-indexed) then the ghosts that are a
  // neighbor of some local atom.  Atoms of unmapped types get a placeholder
  // type and no edges; their predictions are discarded.  A ghost that is a
  // periodic image of an atom of this rank is that atom's node: its features
  // need no exchange, and the edges through it pair with their reverses
  // (glassmd evaluates the two directions of a pair at the cost of one).
  atom_node.assign(nall, -1);
  own_atom.clear();
  if (atom->tag_enable) {
    own_atom.reserve(nlocal);
    for (int i = 0; i < nlocal; i++) own_atom[atom->tag[i]] = i;
  }
  node_atom.resize(nlocal);
  node_types.resize(nlocal);
  for (int i = 0; i < nlocal; i++) {
    atom_node[i] = i;
    node_atom[i] = i;
    node_types[i] = MAX(type_map[type[i]], 0);
  }
  senders.clear();
  receivers.clear();
  edge_vec.clear();

  const int inum = list->inum;
  const int *ilist = list->ilist;
  const int *numneigh = list->numneigh;
  int **firstneigh = list->firstneigh;
  for (int ii = 0; ii < inum; ii++) {
    const int i = ilist[ii];
    if (type_map[type[i]] < 0) continue;
    const int *jlist = firstneigh[i];
    const int jnum = numneigh[i];
    for (int jj = 0; jj < jnum; jj++) {
      const int j = jlist[jj] & NEIGHMASK;
      const int tj = type_map[type[j]];
      if (tj < 0) continue;
      const double dx = x[j][0] - x[i][0];
      const double dy = x[j][1] - x[i][1];
      const double dz = x[j][2] - x[i][2];
      if (dx * dx + dy * dy + dz * dz >= cutsq) continue;
      int node = atom_node[j];
      if (node < 0) {
        const auto own = atom->tag_enable ? own_atom.find(atom->tag[j]) : own_atom.end();
        if (own != own_atom.end()) {
          node = own->second;
        } else {
          node = (int) node_atom.size();
          node_atom.push_back(j);
          node_types.push_back(tj);
        }
        atom_node[j] = node;
      }
      senders.push_back(node);
      receivers.push_back(i);
      edge_vec.push_back(dx);
      edge_vec.push_back(dy);
      edge_vec.push_back(dz);
    }
  }

  const int nnodes = (int) node_atom.size();
  const int nedges = (int) senders.size();
  // The layers run one at a time with ghost exchanges in between only if some rank has nodes that are
  // other ranks' atoms (not with one rank, where every ghost is a periodic image of a local atom).
  int mine = nnodes > nlocal ? 1 : 0;
  int any = 0;
  MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, world);
  const bool ghost_nodes = any != 0;
  const bool active = nnodes > 0;    // a rank without atoms still joins the communication
  int rc = 0;
  std::string message;

  if (active) {
    GIL gil;
    rc = glassgnn_begin(handle, nnodes, node_types.data(), nedges, senders.data(),
                        receivers.data(), edge_vec.data());
    if (rc) message = glassgnn_last_error();
  }
  check(rc, fmt::format("failed to build the model inputs at step {}: {}", update->ntimestep,
                        message)
                .c_str());

  readout_values.assign((size_t) nlocal * num_model_outputs, 0.0);
  if (ghost_nodes) {
    evaluate_layer_by_layer(active, nnodes);
  } else {
    // nothing to exchange between layers: glassmd runs them all in one call, in the model's dtype
    if (active && nlocal > 0) {
      GIL gil;
      rc = glassgnn_predict(handle, nlocal, readout_values.data());
      if (rc) message = glassgnn_last_error();
    }
    check(rc, fmt::format("model evaluation failed at step {}: {}", update->ntimestep, message)
                  .c_str());
  }

  for (int i = 0; i < nlocal; i++) {
    const bool keep = (mask[i] & groupbit) && type_map[type[i]] >= 0;
    for (int m = 0; m < nvalues; m++)
      value(i, m) = keep ? readout_values[(size_t) i * num_model_outputs + columns[m]] : 0.0;
  }
  if (property_index >= 0) copy_to_property();
  last_evaluation = update->ntimestep;
}

/* ----------------------------------------------------------------------
   stop with the ID of an atom whose position is NaN or inf (a run gone
   unstable).  LAMMPS checks positions only when it reneighbors; without
   this check they would reach the model as edge vectors naming no atom.
------------------------------------------------------------------------- */

void FixGlassGNN::check_positions()
{
  const int nlocal = atom->nlocal;
  double **x = atom->x;
  const int *type = atom->type;
  int mine = 0;
  tagint lowest_mine = MAXTAGINT;
  for (int i = 0; i < nlocal; i++) {
    if (type_map[type[i]] < 0) continue;    // not in the graph
    if (std::isfinite(x[i][0]) && std::isfinite(x[i][1]) && std::isfinite(x[i][2])) continue;
    // without atom IDs, the 1-based index among this rank's atoms (atom_modify id no)
    const tagint name = atom->tag_enable ? atom->tag[i] : (tagint) i + 1;
    lowest_mine = MIN(lowest_mine, name);
    mine++;
  }
  int total = 0;
  MPI_Allreduce(&mine, &total, 1, MPI_INT, MPI_SUM, world);
  if (total == 0) return;
  tagint lowest = lowest_mine;
  MPI_Allreduce(&lowest_mine, &lowest, 1, MPI_LMP_TAGINT, MPI_MIN, world);
  const std::string which =
      fmt::format("{} {}", atom->tag_enable ? "atom" : "local atom", lowest);
  const std::string what = (total == 1)
      ? fmt::format("{} has a non-finite position (NaN or inf)", which)
      : fmt::format("{} atoms have non-finite positions (NaN or inf), the lowest-numbered {}",
                    total, which);
  error->all(FLERR,
             "Fix glassgnn: {} at step {}; the simulation is unstable (check the timestep and the "
             "starting structure)",
             what, update->ntimestep);
}

/* ----------------------------------------------------------------------
   the layers one at a time, the ghost nodes' features refreshed from
   their owners in between; the readout into readout_values
------------------------------------------------------------------------- */

void FixGlassGNN::evaluate_layer_by_layer(bool active, int nnodes)
{
  const int nlocal = atom->nlocal;
  int rc = 0;
  std::string message;

  if (atom->nmax > maxfeatures) {
    maxfeatures = atom->nmax;
    memory->destroy(features);
    memory->create(features, maxfeatures, feature_dim, "glassgnn:features");
  }
  node_features.assign((size_t) nnodes * feature_dim, 0.0);

  for (int k = 0; k < num_layers; k++) {
    if (active) {
      GIL gil;
      rc = glassgnn_layer(handle, k, node_features.data(), nnodes,
                          nlocal ? features[0] : nullptr, nlocal);
      if (rc) message = glassgnn_last_error();
    }
    check(rc, fmt::format("model layer {} failed at step {}: {}", k, update->ntimestep, message)
                  .c_str());

    comm->forward_comm(this);
    for (int node = 0; node < nnodes; node++)
      memcpy(&node_features[(size_t) node * feature_dim], features[node_atom[node]],
             sizeof(double) * feature_dim);
  }

  if (active && nlocal > 0) {
    GIL gil;
    rc = glassgnn_readout(handle, node_features.data(), nlocal, readout_values.data());
    if (rc) message = glassgnn_last_error();
  }
  check(rc, fmt::format("model readout failed at step {}: {}", update->ntimestep, message).c_str());
}

/* ----------------------------------------------------------------------
   the same verdict on every rank: the first failing rank's message, or
   nothing.  Every rank reaches each check, so error->all() cannot hang.
------------------------------------------------------------------------- */

void FixGlassGNN::check(int rc, const char *message)
{
  const int nprocs = comm->nprocs;
  int mine = rc ? comm->me : nprocs;
  int first = nprocs;
  MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, world);
  if (first == nprocs) return;

  std::string text = (first == comm->me) ? message : "";
  int length = (int) text.size();
  MPI_Bcast(&length, 1, MPI_INT, first, world);
  text.resize(length);
  MPI_Bcast(text.data(), length, MPI_CHAR, first, world);
  if (nprocs > 1) error->all(FLERR, "Fix glassgnn (rank {}): {}", first, text);
  error->all(FLERR, "Fix glassgnn: {}", text);
}

/* ---------------------------------------------------------------------- */

int FixGlassGNN::local_rank()
{
  MPI_Comm node;
  MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, comm->me, MPI_INFO_NULL, &node);
  int rank = 0;
  MPI_Comm_rank(node, &rank);
  MPI_Comm_free(&node);
  return rank;
}

/* ---------------------------------------------------------------------- */

void FixGlassGNN::copy_to_property()
{
  const int nlocal = atom->nlocal;
  const int *mask = atom->mask;
  if (property_cols == 0) {
    double *target = atom->dvector[property_index];
    for (int i = 0; i < nlocal; i++)
      if (mask[i] & groupbit) target[i] = value(i, 0);
  } else {
    double **target = atom->darray[property_index];
    for (int i = 0; i < nlocal; i++)
      if (mask[i] & groupbit)
        for (int m = 0; m < nvalues; m++) target[i][m] = value(i, m);
  }
}

void FixGlassGNN::copy_from_property()
{
  const int nlocal = atom->nlocal;
  const int *mask = atom->mask;
  for (int i = 0; i < nlocal; i++)
    for (int m = 0; m < nvalues; m++) {
      double v = 0.0;
      if (mask[i] & groupbit)
        v = (property_cols == 0) ? atom->dvector[property_index][i]
                                 : atom->darray[property_index][i][m];
      value(i, m) = v;
    }
}

/* ----------------------------------------------------------------------
   global output: mean over the group atoms the model evaluates
------------------------------------------------------------------------- */

double FixGlassGNN::compute_vector(int m)
{
  const int nlocal = atom->nlocal;
  const int *mask = atom->mask;
  const int *type = atom->type;
  double local[2] = {0.0, 0.0}, total[2] = {0.0, 0.0};
  for (int i = 0; i < nlocal; i++)
    if ((mask[i] & groupbit) && type_map[type[i]] >= 0) {
      local[0] += value(i, m);
      local[1] += 1.0;
    }
  MPI_Allreduce(local, total, 2, MPI_DOUBLE, MPI_SUM, world);
  return total[1] > 0.0 ? total[0] / total[1] : 0.0;
}

double FixGlassGNN::compute_scalar()
{
  return compute_vector(0);
}

/* ----------------------------------------------------------------------
   global restart state: when the values were computed, and how many
------------------------------------------------------------------------- */

void FixGlassGNN::write_restart(FILE *fp)
{
  if (comm->me != 0) return;
  double state[2] = {(double) last_evaluation, (double) nvalues};
  int size = sizeof(state);
  fwrite(&size, sizeof(int), 1, fp);
  fwrite(state, sizeof(double), 2, fp);
}

void FixGlassGNN::restart(char *buf)
{
  auto state = (double *) buf;
  restored = true;
  restored_step = (bigint) state[0];
  restored_nvalues = (int) state[1];
}

/* ----------------------------------------------------------------------
   per-atom storage, following the atoms
------------------------------------------------------------------------- */

void FixGlassGNN::grow_arrays(int nmax)
{
  if (nvalues == 1) {
    memory->grow(values_vector, nmax, "glassgnn:values");
    vector_atom = values_vector;
  } else {
    memory->grow(values_array, nmax, nvalues, "glassgnn:values");
    array_atom = values_array;
  }
}

void FixGlassGNN::copy_arrays(int i, int j, int /*delflag*/)
{
  for (int m = 0; m < nvalues; m++) value(j, m) = value(i, m);
}

void FixGlassGNN::set_arrays(int i)
{
  for (int m = 0; m < nvalues; m++) value(i, m) = 0.0;
}

int FixGlassGNN::pack_exchange(int i, double *buf)
{
  for (int m = 0; m < nvalues; m++) buf[m] = value(i, m);
  return nvalues;
}

int FixGlassGNN::unpack_exchange(int nlocal, double *buf)
{
  for (int m = 0; m < nvalues; m++) value(nlocal, m) = buf[m];
  return nvalues;
}

/* ----------------------------------------------------------------------
   hidden features of owned atoms -> their ghost copies, between layers
------------------------------------------------------------------------- */

int FixGlassGNN::pack_forward_comm(int n, int *sendlist, double *buf, int /*pbc_flag*/,
                                   int * /*pbc*/)
{
  int m = 0;
  for (int k = 0; k < n; k++) {
    const double *row = features[sendlist[k]];
    for (int c = 0; c < feature_dim; c++) buf[m++] = row[c];
  }
  return m;
}

void FixGlassGNN::unpack_forward_comm(int n, int first, double *buf)
{
  int m = 0;
  for (int i = first; i < first + n; i++) {
    double *row = features[i];
    for (int c = 0; c < feature_dim; c++) row[c] = buf[m++];
  }
}

/* ---------------------------------------------------------------------- */

double FixGlassGNN::memory_usage()
{
  double bytes = (double) atom->nmax * nvalues * sizeof(double);
  bytes += (double) maxfeatures * feature_dim * sizeof(double);
  bytes += (double) node_features.capacity() * sizeof(double);
  bytes += (double) (edge_vec.capacity() + readout_values.capacity()) * sizeof(double);
  bytes += (double) (node_atom.capacity() + atom_node.capacity() + node_types.capacity() +
                     senders.capacity() + receivers.capacity()) *
      sizeof(int);
  bytes += (double) own_atom.size() * (sizeof(tagint) + sizeof(int) + 2 * sizeof(void *));
  return bytes;
}
