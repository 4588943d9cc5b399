package keys_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/infertrail/infertrail/keys"
)

// This example seals one piece of content under a new data key, wraps the
// data key with the keyring's current KEK for storage, and reads it back.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "keys-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	// On first start the keyring file is created in the data folder.
	kek, created, err := keys.OpenOrCreateKeyring(filepath.Join(dir, "keyring"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("created:", created)

	// One data key per erasure scope; its id binds the wrapped form to its row.
	dekID := []byte("scope:session-42")
	dek, err := keys.NewDataKey()
	if err != nil {
		log.Fatal(err)
	}
	wrapped, err := kek.Wrap(ctx, dek, dekID) // store wrapped, never dek
	if err != nil {
		log.Fatal(err)
	}
	c, err := keys.NewCipher(dek)
	if err != nil {
		log.Fatal(err)
	}
	sealed := c.Seal(nil, []byte("Pay invoice 7 of 1200 EUR to ACME"), []byte("record-7"))

	// Later, maybe in another process: unwrap the data key, open the content.
	dek2, err := kek.Unwrap(ctx, wrapped, dekID)
	if err != nil {
		log.Fatal(err)
	}
	c2, err := keys.NewCipher(dek2)
	if err != nil {
		log.Fatal(err)
	}
	plain, err := c2.Open(nil, sealed, []byte("record-7"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s\n", plain)

	// Content moved to another record does not open.
	_, err = c2.Open(nil, sealed, []byte("record-8"))
	fmt.Println(errors.Is(err, keys.ErrDecrypt))
	// Output:
	// created: true
	// Pay invoice 7 of 1200 EUR to ACME
	// true
}

// This example rotates the KEK: new data keys are wrapped with the new KEK,
// old ones are re-wrapped, and then the old KEK is removed.
func ExampleKeyring_Rotate() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "keys-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	k, err := keys.CreateKeyring(filepath.Join(dir, "keyring"))
	if err != nil {
		log.Fatal(err)
	}
	dek, _ := keys.NewDataKey()
	id := []byte("dek-1")
	wrapped, _ := k.Wrap(ctx, dek, id)
	old := k.Current()

	if _, err := k.Rotate(); err != nil {
		log.Fatal(err)
	}

	// The server re-wraps every data key not wrapped by the current KEK.
	if by, _ := keys.WrappedBy(wrapped); by != k.Current() {
		plain, err := k.Unwrap(ctx, wrapped, id)
		if err != nil {
			log.Fatal(err)
		}
		if wrapped, err = k.Wrap(ctx, plain, id); err != nil {
			log.Fatal(err)
		}
	}
	// Then the old KEK can go.
	if err := k.Remove(old); err != nil {
		log.Fatal(err)
	}
	_, err = k.Unwrap(ctx, wrapped, id)
	fmt.Println(len(k.List()), err)
	// Output: 1 <nil>
}

// WrappedBy reads which KEK wrapped a key without unwrapping it.
func ExampleWrappedBy() {
	wrapped := []byte("\x01\x0ckek-0a1b2c3d...nonce and ciphertext...")
	id, err := keys.WrappedBy(wrapped)
	fmt.Println(id, err)
	// Output: kek-0a1b2c3d <nil>
}

// A Cipher seals content by appending to a buffer, so one buffer can be
// reused for many records.
func ExampleCipher_Seal() {
	dek, _ := keys.NewDataKey()
	c, _ := keys.NewCipher(dek)
	buf := make([]byte, 0, 4096)
	for _, content := range []string{"prompt", "response"} {
		buf = c.Seal(buf[:0], []byte(content), []byte("record-7/"+content))
		fmt.Println(len(buf) - len(content))
	}
	// Output:
	// 28
	// 28
}
