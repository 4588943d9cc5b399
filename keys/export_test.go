package keys

import "time"

// SetCheckEvery changes how often k looks at its file for changes. Call it
// before k is used.
func SetCheckEvery(k *Keyring, d time.Duration) { k.checkEvery = d }
