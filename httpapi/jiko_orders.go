package httpapi

import (
	"net/http"
	"time"

	"github.com/cardvault/cardvault/vault"
	"github.com/labstack/echo/v4"
)

// jikoOrders registers Jiko-shaped physical card orders under
// /api/v1/jiko-accounts/:account_id.
func (s *Server) jikoOrders(g *echo.Group) {
	g.POST("/card-orders", s.jikoCreateOrder, require(ScopeCardsWrite))
	g.GET("/card-orders", s.jikoListOrders, require(ScopeCardsRead))
	g.GET("/card-orders/:card_order_id", s.jikoGetOrder, require(ScopeCardsRead))
}

// jikoSandbox registers the sandbox's card production under
// /api/v1/sandbox.
func (s *Server) jikoSandbox(g *echo.Group) {
	g.POST("/generate-card", s.jikoGenerateCard, require(ScopeSandbox))
}

type jikoOrder struct {
	CardID          *string               `json:"card_id"`
	CardOrderID     string                `json:"card_order_id"`
	Status          string                `json:"status"`
	NameOnCard      string                `json:"name_on_card"`
	ShippingAddress vault.ShippingAddress `json:"shipping_address"`
	CreatedAt       time.Time             `json:"created_at"`
	UpdatedAt       time.Time             `json:"updated_at"`
	ObjectType      string                `json:"object_type"`
}

func jikoOrderOf(o *vault.Order) jikoOrder {
	out := jikoOrder{CardOrderID: o.ID, Status: string(o.Status), NameOnCard: o.NameOnCard, ShippingAddress: o.Shipping,
		CreatedAt: o.CreatedAt, UpdatedAt: o.UpdatedAt, ObjectType: "card_order"}
	if o.CardID != "" {
		out.CardID = &o.CardID
	}
	return out
}

// jikoCreateOrder handles POST .../card-orders: 201 in INITIAL.
func (s *Server) jikoCreateOrder(c echo.Context) error {
	owner := c.Param("account_id")
	body, err := readBody(c)
	if err != nil {
		return err
	}
	var req struct {
		NameOnCard      string                 `json:"name_on_card"`
		ShippingAddress *vault.ShippingAddress `json:"shipping_address"`
	}
	if err := decodeJSON(body, &req); err != nil {
		return err
	}
	if err := requireFields(reqField{"name_on_card", req.NameOnCard == ""}, reqField{"shipping_address", req.ShippingAddress == nil}); err != nil {
		return err
	}
	idem, err := idempotencyKey(c, owner, body)
	if err != nil {
		return err
	}
	o, err := s.svc.CreateOrder(c.Request().Context(), caller(c), owner, req.NameOnCard, *req.ShippingAddress, idem)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, jikoOrderOf(o))
}

// jikoListOrders handles GET .../card-orders.
func (s *Server) jikoListOrders(c echo.Context) error {
	orders, err := s.svc.ListOrders(c.Request().Context(), c.Param("account_id"))
	if err != nil {
		return err
	}
	items := make([]jikoOrder, len(orders))
	for i, o := range orders {
		items[i] = jikoOrderOf(o)
	}
	return c.JSON(http.StatusOK, map[string]any{"items": items})
}

// jikoGetOrder handles GET .../card-orders/:card_order_id.
func (s *Server) jikoGetOrder(c echo.Context) error {
	o, err := s.svc.Order(c.Request().Context(), c.Param("account_id"), c.Param("card_order_id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, jikoOrderOf(o))
}

// jikoGenerateCard handles POST /api/v1/sandbox/generate-card
// {card_order_id}: 202, the order ORDERED with its card NOT_ACTIVATED.
func (s *Server) jikoGenerateCard(c echo.Context) error {
	var req struct {
		CardOrderID string `json:"card_order_id"`
	}
	if err := bindJSON(c, &req); err != nil {
		return err
	}
	if err := requireFields(reqField{"card_order_id", req.CardOrderID == ""}); err != nil {
		return err
	}
	o, err := s.svc.GenerateCard(c.Request().Context(), caller(c), req.CardOrderID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusAccepted, jikoOrderOf(o))
}
