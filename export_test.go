package infertrail

// MarshalContentRefsV3 encodes refs in version 3 of the form, as stores
// wrote them before version 4.
func MarshalContentRefsV3(refs []ContentRef) []byte { return marshalContentRefs(refs, 3) }

// MarshalContentRefsV4 encodes refs in version 4 of the form, as stores
// kept them before 2026-11-29, later.
func MarshalContentRefsV4(refs []ContentRef) []byte { return marshalContentRefs(refs, 4) }
