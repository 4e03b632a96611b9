package httpapi

import (
	"context"

	"github.com/cardvault/cardvault/vault"
)

// Vault is what the HTTP surface needs of the domain: every route's one
// call. *vault.Service has it; the edge's own tests (status codes, error
// shapes, headers, auth) use a fake, so they need no token.
type Vault interface {
	// Jiko's accounts and the native import.
	IssueVirtual(ctx context.Context, c vault.Caller, ownerID, publicKeyPEM string, idem *vault.IdemKey) (*vault.RSAReveal, error)
	RevealRSA(ctx context.Context, c vault.Caller, ownerID, cardID, publicKeyPEM string, idem *vault.IdemKey) (*vault.RSAReveal, error)
	Card(ctx context.Context, ownerID, id string) (*vault.Card, error)
	CardByID(ctx context.Context, id string) (*vault.Card, error)
	List(ctx context.Context, f vault.CardFilter) ([]*vault.Card, string, error)
	SetStatus(ctx context.Context, c vault.Caller, ownerID, id, status string) (*vault.Card, error)
	Close(ctx context.Context, c vault.Caller, ownerID, id, reason, lostStolenDate string) error
	CreateOrder(ctx context.Context, c vault.Caller, ownerID, nameOnCard string, addr vault.ShippingAddress, idem *vault.IdemKey) (*vault.Order, error)
	Order(ctx context.Context, ownerID, id string) (*vault.Order, error)
	ListOrders(ctx context.Context, ownerID string) ([]*vault.Order, error)
	GenerateCard(ctx context.Context, c vault.Caller, orderID string) (*vault.Order, error)
	Import(ctx context.Context, c vault.Caller, in vault.ImportRequest, idem *vault.IdemKey) (*vault.Card, error)
	LookupPAN(ctx context.Context, c vault.Caller, pan []byte) (string, error)
	VerifyCard(ctx context.Context, c vault.Caller, in vault.VerifyRequest) (*vault.Verification, error)
	VerifyPIN(ctx context.Context, c vault.Caller, in vault.VerifyPINRequest) (*vault.PINVerification, error)

	// PINs.
	SetPINKey(ctx context.Context) (*vault.PublicSetPINKey, error)
	SetPINJiko(ctx context.Context, c vault.Caller, ownerID, cardID string, ct []byte) error
	SetPINSolaris(ctx context.Context, c vault.Caller, in vault.SetPINSolarisRequest) error
	ViewPINRSA(ctx context.Context, c vault.Caller, ownerID, cardID, publicKeyPEM string) (*vault.PINReveal, error)

	// Solaris's devices and secure view.
	RegisterDevice(ctx context.Context, c vault.Caller, in vault.RegisterDeviceRequest) (*vault.Device, *vault.Challenge, error)
	AnswerChallenge(ctx context.Context, c vault.Caller, challengeID, signature, deviceData string) error
	AddDeviceKey(ctx context.Context, c vault.Caller, in vault.AddDeviceKeyRequest) (*vault.Device, error)
	Device(ctx context.Context, id string) (*vault.Device, error)
	ListDevices(ctx context.Context, personID string) ([]*vault.Device, error)
	DeleteDevice(ctx context.Context, c vault.Caller, id string) error
	SecureView(ctx context.Context, c vault.Caller, in vault.SecureViewRequest, idem *vault.IdemKey) (string, error)
	ViewPINOnDevice(ctx context.Context, c vault.Caller, in vault.SecureViewRequest) (string, error)
}

var _ Vault = (*vault.Service)(nil)
