package infertrail

// MarshalContentRefsV3 encodes refs in version 3 of the form, as stores
// wrote them before version 4.
func MarshalContentRefsV3(refs []ContentRef) []byte { return marshalContentRefs(refs, 3) }
