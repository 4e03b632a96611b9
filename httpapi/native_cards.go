package httpapi

import (
	"net/http"
	"time"

	"github.com/cardvault/cardvault/vault"
	"github.com/labstack/echo/v4"
)

// nativeCards registers the native routes under /v1/cards.
func (s *Server) nativeCards(g *echo.Group) {
	g.POST("/cards", s.importCard, require(ScopeCardsWrite))
	g.POST("/cards/lookup", s.lookupCard, require(ScopeCardsLookup))
	g.GET("/cards/:id", s.getCard, require(ScopeCardsRead))
}

// cardMetadata is what the native API shows of a card: never a secret,
// and not its owner, which a caller holding only a card id must not learn.
type cardMetadata struct {
	ID          string     `json:"id"`
	Type        string     `json:"type"`
	Status      string     `json:"status"`
	Last4       string     `json:"last4"`
	ExpiryMonth int        `json:"expiry_month"`
	ExpiryYear  int        `json:"expiry_year"`
	KeyVersion  uint32     `json:"key_version"`
	CreatedAt   time.Time  `json:"created_at"`
	ClosedAt    *time.Time `json:"closed_at,omitempty"`
}

func metadataOf(c *vault.Card) cardMetadata {
	return cardMetadata{ID: c.ID, Type: string(c.Type), Status: string(c.Status), Last4: c.Last4,
		ExpiryMonth: c.ExpiryMonth, ExpiryYear: c.ExpiryYear, KeyVersion: c.KeyVersion, CreatedAt: c.CreatedAt, ClosedAt: c.ClosedAt}
}

// importCard handles POST /v1/cards: card data from a processor, sealed and
// stored; the answer is metadata only. The body's buffers are cleared.
func (s *Server) importCard(c echo.Context) error {
	body, err := readBody(c)
	if err != nil {
		return err
	}
	defer clear(body)
	var req struct {
		OwnerID     *string      `json:"owner_id"`
		Type        string       `json:"type"`
		PAN         secretDigits `json:"pan"`
		CVV         secretDigits `json:"cvv"`
		ExpiryMonth *int         `json:"expiry_month"`
		ExpiryYear  *int         `json:"expiry_year"`
		Name        string       `json:"name"`
	}
	defer func() { clear(req.PAN); clear(req.CVV) }()
	if err := decodeJSON(body, &req); err != nil {
		return err
	}
	if err := requireFields(reqField{"owner_id", req.OwnerID == nil}, reqField{"pan", req.PAN == nil}, reqField{"cvv", req.CVV == nil},
		reqField{"expiry_month", req.ExpiryMonth == nil}, reqField{"expiry_year", req.ExpiryYear == nil}); err != nil {
		return err
	}
	idem, err := idempotencyKey(c, *req.OwnerID, body)
	if err != nil {
		return err
	}
	defer idem.Clear()
	card, err := s.svc.Import(c.Request().Context(), caller(c), vault.ImportRequest{
		OwnerID: *req.OwnerID, Type: vault.CardType(req.Type), PAN: req.PAN, CVV: req.CVV,
		ExpiryMonth: *req.ExpiryMonth, ExpiryYear: *req.ExpiryYear, Name: req.Name,
	}, idem)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, metadataOf(card))
}

// lookupCard handles POST /v1/cards/lookup {"pan"}: the id of the card
// with that PAN, found by fingerprint without decrypting anything, and
// nothing else about it. It needs a scope of its own, is budgeted per
// caller and audited. POST keeps the PAN out of URLs and access logs.
func (s *Server) lookupCard(c echo.Context) error {
	body, err := readBody(c)
	if err != nil {
		return err
	}
	defer clear(body)
	var req struct {
		PAN secretDigits `json:"pan"`
	}
	defer func() { clear(req.PAN) }()
	if err := decodeJSON(body, &req); err != nil {
		return err
	}
	if req.PAN == nil {
		return vault.Invalid("pan", "is required")
	}
	id, err := s.svc.LookupPAN(c.Request().Context(), caller(c), req.PAN)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]string{"id": id})
}

// getCard handles GET /v1/cards/:id.
func (s *Server) getCard(c echo.Context) error {
	card, err := s.svc.CardByID(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, metadataOf(card))
}
