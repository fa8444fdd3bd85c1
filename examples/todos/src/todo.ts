export interface Todo {
  id: string;
  title: string;
  created: string;
  done: boolean;
}

export function newTodo(title: string, created: string): Todo {
  return { id: `${created}-${crypto.randomUUID().slice(0, 8)}`, title, created, done: false };
}
