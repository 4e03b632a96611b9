package httpapi

import (
	"net/http"
	"strconv"

	"github.com/cardvault/cardvault/vault"
	"github.com/labstack/echo/v4"
)

// jikoCards registers the Jiko-shaped virtual card routes under
// /api/v1/jiko-accounts/:account_id. The guide spells the collection
// "cards", the OpenAPI file "virtual-cards"; both work.
func (s *Server) jikoCards(g *echo.Group) {
	for _, coll := range []string{"/virtual-cards", "/cards"} {
		g.POST(coll, s.jikoCreateCard, require(ScopeCardsWrite, ScopeCardsReveal))
		g.POST(coll+"/:card_id", s.jikoReadCard, require(ScopeCardsReveal))
		g.DELETE(coll+"/:card_id", s.jikoDeleteCard, require(ScopeCardsWrite))
	}
	g.GET("/cards", s.jikoListCards, require(ScopeCardsRead))
	g.GET("/cards/:card_id/status", s.jikoGetStatus, require(ScopeCardsRead))
	g.PATCH("/cards/:card_id/status", s.jikoSetStatus, require(ScopeCardsWrite))
	g.POST("/cards/:card_id/close", s.jikoCloseCard, require(ScopeCardsWrite))
}

type publicKeyBody struct {
	PublicKey *string `json:"public_key"`
}

// publicKeyRequest decodes {"public_key": PEM} and the idempotency key.
func publicKeyRequest(c echo.Context, owner string) (string, *vault.IdemKey, error) {
	if err := vault.ValidateOwnerID("account_id", owner); err != nil {
		return "", nil, err
	}
	body, err := readBody(c)
	if err != nil {
		return "", nil, err
	}
	var req publicKeyBody
	if err := decodeJSON(body, &req); err != nil {
		return "", nil, err
	}
	if req.PublicKey == nil {
		return "", nil, vault.Invalid("public_key", "is required")
	}
	idem, err := idempotencyKey(c, owner, body)
	if err != nil {
		return "", nil, err
	}
	return *req.PublicKey, idem, nil
}

type jikoCardSecret struct {
	*vault.RSAReveal
	ObjectType string `json:"object_type"`
}

// jikoCreateCard handles POST /api/v1/jiko-accounts/:account_id/virtual-cards
// (and .../cards): issue a virtual card and return its data encrypted to the
// single-use key in the body.
func (s *Server) jikoCreateCard(c echo.Context) error {
	owner := c.Param("account_id")
	pemText, idem, err := publicKeyRequest(c, owner)
	if err != nil {
		return err
	}
	out, err := s.svc.IssueVirtual(c.Request().Context(), caller(c), owner, pemText, idem)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, jikoCardSecret{out, "virtual_card"})
}

// jikoReadCard handles POST /api/v1/jiko-accounts/:account_id/virtual-cards/:card_id
// (and .../cards/:card_id): reveal a card's data to a single-use key.
func (s *Server) jikoReadCard(c echo.Context) error {
	owner := c.Param("account_id")
	pemText, idem, err := publicKeyRequest(c, owner)
	if err != nil {
		return err
	}
	out, err := s.svc.RevealRSA(c.Request().Context(), caller(c), owner, c.Param("card_id"), pemText, idem)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, jikoCardSecret{out, "virtual_card"})
}

// jikoDeleteCard handles DELETE /api/v1/jiko-accounts/:account_id/virtual-cards/:card_id:
// close the card (reason CANCELED).
func (s *Server) jikoDeleteCard(c echo.Context) error {
	if err := s.svc.Close(c.Request().Context(), caller(c), c.Param("account_id"), c.Param("card_id"), "CANCELED", ""); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

type jikoCardItem struct {
	CardID string `json:"card_id"`
	Name   string `json:"name"`
	Status string `json:"status"`
	Type   string `json:"type"`
	Last4  string `json:"last_four"`
}

func jikoItem(card *vault.Card) jikoCardItem {
	return jikoCardItem{CardID: card.ID, Name: card.Name, Status: string(card.Status), Type: string(card.Type), Last4: card.Last4}
}

// jikoListCards handles GET /api/v1/jiko-accounts/:account_id/cards?limit=&cursor=&filter[status]=.
func (s *Server) jikoListCards(c echo.Context) error {
	f := vault.CardFilter{OwnerID: c.Param("account_id"), After: c.QueryParam("cursor")}
	if l := c.QueryParam("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > vault.MaxPageSize {
			return vault.Invalid("limit", "must be an integer from 1 to "+strconv.Itoa(vault.MaxPageSize))
		}
		f.Limit = n
	}
	if st := c.QueryParam("filter[status]"); st != "" {
		status, ok := vault.ParseStatus(st)
		if !ok {
			return vault.Invalid("filter[status]", "must be one of OPEN, LOCKED, CLOSED, NOT_ACTIVATED, FROZEN")
		}
		f.Status = status
	}
	cards, next, err := s.svc.List(c.Request().Context(), f)
	if err != nil {
		return err
	}
	items := make([]jikoCardItem, 0, len(cards))
	for _, card := range cards {
		items = append(items, jikoItem(card))
	}
	var cursor *string
	if next != "" {
		cursor = &next
	}
	return c.JSON(http.StatusOK, map[string]any{"items": items, "next_cursor": cursor})
}

// jikoGetStatus handles GET /api/v1/jiko-accounts/:account_id/cards/:card_id/status.
func (s *Server) jikoGetStatus(c echo.Context) error {
	card, err := s.svc.Card(c.Request().Context(), c.Param("account_id"), c.Param("card_id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]string{"card_id": card.ID, "status": string(card.Status)})
}

// jikoSetStatus handles PATCH /api/v1/jiko-accounts/:account_id/cards/:card_id/status
// with {"status": "OPEN"|"LOCKED"}.
func (s *Server) jikoSetStatus(c echo.Context) error {
	body, err := readBody(c)
	if err != nil {
		return err
	}
	var req struct {
		Status *string `json:"status"`
	}
	if err := decodeJSON(body, &req); err != nil {
		return err
	}
	if req.Status == nil {
		return vault.Invalid("status", "is required")
	}
	card, err := s.svc.SetStatus(c.Request().Context(), caller(c), c.Param("account_id"), c.Param("card_id"), *req.Status)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]string{"card_id": card.ID, "status": string(card.Status)})
}

// jikoCloseCard handles POST /api/v1/jiko-accounts/:account_id/cards/:card_id/close
// with {"closure_reason", "lost_stolen_date"}.
func (s *Server) jikoCloseCard(c echo.Context) error {
	body, err := readBody(c)
	if err != nil {
		return err
	}
	var req struct {
		Reason *string `json:"closure_reason"`
		Date   string  `json:"lost_stolen_date"`
	}
	if err := decodeJSON(body, &req); err != nil {
		return err
	}
	if req.Reason == nil {
		return vault.Invalid("closure_reason", "is required")
	}
	if err := s.svc.Close(c.Request().Context(), caller(c), c.Param("account_id"), c.Param("card_id"), *req.Reason, req.Date); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
